"""From a request to a verdict: the service's logic, free of gRPC.

The servicer translates protobuf to these plain types and back; everything a
gateway's answer depends on is decided here, so the CLI's in-process mode,
``spamgate policy explain`` and the server give the same verdict for the
same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spamgate.model.errors import ErrorKind, ServiceError
from spamgate.model.evidence import THIN_EVIDENCE
from spamgate.model.limits import ParseLimits
from spamgate.model.manifest import OperatingPoint
from spamgate.model.parse import parse_message
from spamgate.model.scoring import Reason, Score
from spamgate.service.policy.decide import (
    Group,
    decide_groups,
    from_domain_of,
    from_header_allowed,
    from_header_blocked,
    recipient_groups,
)
from spamgate.service.policy.settings import Action, Policy, Settings
from spamgate.service.scoring.model_holder import ModelHolder, NoModelError
from spamgate.service.scoring.pool import DeadlinePassed, ScoringAborted, ScoringBusy, ScoringPool

log = logging.getLogger("spamgate.verdict")

# The standard anti-spam test string (SpamAssassin's GTUBE): a message holding it
# scores 1.0 whatever the model says, so admins can test their whole chain
# (thresholds, MTA hook, quarantine) with a message they know the answer to.
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# Header-only parse for the authenticated-From allow list: cheap and bounded.
_HEADER_LIMITS = ParseLimits(max_bytes=64 * 1024, max_parts=1, max_text_chars=1, max_html_chars=1, max_urls=1)


class RequestError(ServiceError):
    """A request that cannot get a verdict, with a message safe to show the client.

    ``kind`` is per instance; ``service.api.status_codes`` turns it into the gRPC status.
    """

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Envelope:
    client_ip: str = ""
    helo: str = ""
    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    message: bytes
    envelope: Envelope = field(default_factory=Envelope)
    correlation_id: str = ""
    policy: str = ""


@dataclass(frozen=True)
class GroupResult:
    """The verdict for one recipient group (what a gateway needs to act on it)."""

    recipients: tuple[str, ...]
    policy: str
    action: Action
    threshold: str
    list_decision: str
    add_headers: tuple[tuple[str, str], ...]
    subject_tag: str
    reroute_to: str
    reject_text: str


@dataclass(frozen=True)
class Verdict:
    correlation_id: str
    spam_probability: float
    action: Action
    add_headers: tuple[tuple[str, str], ...]
    subject_tag: str
    reroute_to: str
    reject_text: str
    reasons: tuple[Reason, ...]
    model_version: str
    scanned: bool
    list_decision: str
    limits_cut: tuple[str, ...]
    threshold: str
    policy: str
    policy_version: str = ""
    groups: tuple[GroupResult, ...] = ()
    verdict_id: str = ""
    unfamiliar: bool = False  # most of the message was never in the training mail (model.familiarity)


def _headers(
    s: Settings,
    action: Action,
    p: float | None,
    reasons: tuple[Reason, ...],
    model: str,
    threshold: str,
    listed: str,
) -> tuple[tuple[str, str], ...]:
    if action == Action.DELIVER and not s.info_headers:
        return ()
    h = s.headers
    out = []
    if h.flag:
        out.append((h.flag, "YES" if action != Action.DELIVER else "NO"))
    if h.probability:
        out.append((h.probability, f"{p:.4f}" if p is not None else f"not scanned ({listed or threshold})"))
    if h.action:
        out.append((h.action, action.name))
    if h.model and model:
        out.append((h.model, model))
    if h.reasons and reasons:
        out.append((h.reasons, ", ".join(f"{r.name}={r.contribution:+.2f}" for r in reasons)[:900]))
    if h.threshold and threshold:
        out.append((h.threshold, threshold))
    return tuple((name, _CONTROL.sub("?", value)) for name, value in out)


# Control characters in a header value we add. Reason names are the message's own tokens, and a bare CR
# survives parsing inside a header value (only CRLF is a line end there): an attack review put
# "cs:a\rx-ok: 61cc" among the reasons with a crafted charset and got it verbatim into X-Spam-Reasons,
# i.e. into the milter's addheader and the pipe filter's rewritten message.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _speaker(results: Sequence[GroupResult], policy: Policy) -> GroupResult:
    """The group that speaks for the message: the strictest action, and among groups tied on it the
    one whose section comes first in the policy (the global section, then ``[[domain]]`` sections in
    file order).

    A milter or pipe filter marks the one message for every recipient. Ties went to the first
    recipient, and the sender chooses the RCPT TO order: a recipient added first under a section
    that tags without a subject tag and under another flag header took the "[SPAM] " tag and
    X-Spam-Flag off the other recipients' copy (adversarial review, seventh session).
    """
    strictest = max(r.action for r in results)
    order = {name: i for i, name in enumerate([policy.name, *(d.name for d in policy.domains)])}
    return min(
        (r for r in results if r.action == strictest), key=lambda r: order.get(r.policy, len(order))
    )


def _group_result(g: Group, p: float | None, reasons: tuple[Reason, ...], model: str) -> GroupResult:
    s = g.settings
    assert g.action is not None, "a group is decided before its result is built"
    return GroupResult(
        recipients=g.recipients,
        policy=g.policy,
        action=g.action,
        threshold=g.threshold,
        list_decision=g.list_decision,
        add_headers=_headers(s, g.action, p, reasons[: s.max_reasons], model, g.threshold, g.list_decision),
        subject_tag=s.subject_tag if g.action == Action.TAG else "",
        reroute_to=s.reroute_to if g.action == Action.REROUTE else "",
        reject_text=s.reject_text if g.action == Action.REJECT else "",
    )


def build_verdict(
    request: Request,
    holder: ModelHolder,
    policy: Policy,
    max_message_bytes: int,
    time_remaining: float | None = None,
    pool: ScoringPool | None = None,
) -> Verdict:
    """Lists, then (only if needed) the model, then thresholds; raises ``RequestError`` for no verdict.

    With a ``pool`` the model runs in a worker process under the per-message
    CPU budget and the caller's deadline (``service.scoring.pool``); a
    message it cannot finish gets the policy's ``over_budget_action`` instead
    of a probability. Without one (``spamgate classify`` in process,
    ``policy explain``) it runs in this thread, unbounded.
    """
    size = len(request.message)
    if size == 0:
        raise RequestError(ErrorKind.INVALID_ARGUMENT, "message is empty")
    if size > max_message_bytes:
        raise RequestError(
            ErrorKind.INVALID_ARGUMENT,
            f"message is {size} bytes, above the server's limit of {max_message_bytes} bytes",
        )
    if request.policy and request.policy != policy.name:
        raise RequestError(
            ErrorKind.INVALID_ARGUMENT, f"unknown policy {request.policy!r} (active: {policy.name!r})"
        )
    if time_remaining is not None and time_remaining <= 0:
        raise RequestError(ErrorKind.DEADLINE_EXCEEDED, "deadline passed before scoring")
    env = request.envelope

    def from_check() -> str | None:
        if not len(policy.allow.from_header_domains):
            return None
        try:
            headers = parse_message(request.message, _HEADER_LIMITS).headers
            return from_header_allowed(policy, headers, from_domain_of(headers))
        except Exception:  # an allow list only ever allows: a header it cannot read allows nothing
            log.warning("From header not readable for the allow list", extra={"cid": request.correlation_id})
            return None

    def block_from_check() -> str | None:
        if not len(policy.block.from_header_domains):
            return None
        try:
            return from_header_blocked(
                policy, from_domain_of(parse_message(request.message, _HEADER_LIMITS).headers)
            )
        except Exception:  # unreadable: the block list cannot match, the model still scans the mail
            log.warning("From header not readable for the block list", extra={"cid": request.correlation_id})
            return None

    groups = recipient_groups(policy, env.client_ip, env.mail_from, env.rcpt_to, from_check, block_from_check)
    needs_model = any(g.list_action is None for g in groups)
    probability: float | None = None
    reasons: tuple[Reason, ...] = ()
    cut: tuple[str, ...] = ()
    model_version = ""
    points: Sequence[OperatingPoint] = ()
    aborted: ScoringAborted | None = None
    unfamiliar = ""
    if needs_model:
        try:
            scorer = holder.current()
        except NoModelError as exc:
            raise RequestError(exc.kind, "no model loaded yet") from exc
        max_reasons = max(g.settings.max_reasons for g in groups)
        points = scorer.artifact.policy_points
        try:
            score = _score(scorer, request.message, max_reasons, time_remaining, pool)
        except ScoringAborted as exc:
            aborted = exc
        else:
            probability, reasons, cut, model_version = (
                score.probability,
                score.reasons,
                score.cut,
                score.model_version,
            )
            unfamiliar = score.unfamiliar
            # Text with no header block resolves against the text-only points (Artifact.points_for).
            points = scorer.artifact.points_for(score.has_header_block)
            if score.thin:
                # The probability was squeezed into the middle band (model.evidence): say why first.
                reasons = (Reason(THIN_EVIDENCE, "evidence", 0.0), *reasons)
            if unfamiliar:
                reasons = (Reason(unfamiliar, "familiarity", 0.0), *reasons)
        if GTUBE in request.message:
            probability, reasons, aborted = 1.0, (Reason("GTUBE test string", "rule", 100.0),), None
            unfamiliar = ""
            model_version = model_version or scorer.version
    if aborted is not None:
        # No probability: the policy's over-budget action decides for every group the model would have.
        reasons = (Reason(aborted.reason, "limit", 0.0),)
        cut = (f"{aborted.reason.lower()}: {aborted.detail}",)
        decided = decide_groups(
            groups, None, points, fallback=(policy.over_budget_action, f"{aborted.reason}: not scored")
        )
    else:
        cap = (policy.unfamiliar_max_action, unfamiliar) if unfamiliar else None
        decided = decide_groups(groups, probability, points, cap=cap)
    results = tuple(_group_result(g, probability, reasons, model_version) for g in decided)
    top = _speaker(results, policy)
    listed = {r.list_decision for r in results}
    return Verdict(
        correlation_id=request.correlation_id,
        spam_probability=probability if probability is not None else 0.0,
        action=top.action,
        add_headers=top.add_headers,
        subject_tag=top.subject_tag,
        reroute_to=top.reroute_to,
        reject_text=top.reject_text,
        reasons=reasons[: max((g.settings.max_reasons for g in decided), default=0)],
        model_version=model_version,
        scanned=needs_model and aborted is None,
        unfamiliar=bool(unfamiliar),
        list_decision=listed.pop() if len(listed) == 1 else top.list_decision,
        limits_cut=cut,
        threshold=top.threshold,
        policy=top.policy,
        policy_version=policy.version,
        groups=results,
        verdict_id=hashlib.sha256(request.message).hexdigest(),
    )


def _score(
    scorer: Any, raw: bytes, top_k: int, time_remaining: float | None, pool: ScoringPool | None
) -> Score:
    if pool is None or scorer.artifact.path is None:
        result: Score = scorer.score(raw, top_k=top_k)
        return result
    try:
        return pool.score(scorer, raw, top_k, time_remaining)
    except (DeadlinePassed, ScoringBusy) as exc:  # their kind says which status the caller gets
        raise RequestError(exc.kind, str(exc)) from exc


def verdict_dict(v: Verdict) -> dict[str, object]:
    """The one JSON shape of a verdict (``classify --json``, in process or through a server)."""
    return {
        "correlation_id": v.correlation_id,
        "spam_probability": round(v.spam_probability, 6),
        "action": v.action.name,
        "threshold": v.threshold,
        "model_version": v.model_version,
        "scanned": v.scanned,
        "unfamiliar": v.unfamiliar,
        "list_decision": v.list_decision,
        "reasons": [
            {"name": r.name, "kind": r.kind, "contribution": round(r.contribution, 4)} for r in v.reasons
        ],
        "add_headers": [list(h) for h in v.add_headers],
        "subject_tag": v.subject_tag,
        "reroute_to": v.reroute_to,
        "reject_text": v.reject_text,
        "limits_cut": list(v.limits_cut),
        "policy": v.policy,
        "policy_version": v.policy_version,
        "verdict_id": v.verdict_id,
        "groups": [
            {
                "recipients": list(g.recipients),
                "policy": g.policy,
                "action": g.action.name,
                "threshold": g.threshold,
                "list_decision": g.list_decision,
                "add_headers": [list(h) for h in g.add_headers],
                "subject_tag": g.subject_tag,
                "reroute_to": g.reroute_to,
                "reject_text": g.reject_text,
            }
            for g in v.groups
        ],
    }
