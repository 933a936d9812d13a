"""From a request to a verdict: the service's logic, free of gRPC.

The servicer translates protobuf to these plain types and back; everything a
gateway's answer depends on is decided here, so the CLI's in-process mode
and the server give the same verdict for the same bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from model.scoring import Reason
from service.policy import Action, ThresholdPolicy
from service.registry import ModelHolder, NoModelError


class ErrorKind(enum.Enum):
    """Why a request got no verdict (mapped to gRPC status codes by the servicer)."""

    INVALID_ARGUMENT = "invalid_argument"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class RequestError(Exception):
    """A request that cannot get a verdict, with a message safe to show the client."""

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


def _reasons_header(reasons: tuple[Reason, ...]) -> str:
    return ", ".join(f"{r.name}={r.contribution:+.2f}" for r in reasons)[:900]


def build_verdict(
    request: Request,
    holder: ModelHolder,
    policy: ThresholdPolicy,
    max_message_bytes: int,
    time_remaining: float | None = None,
) -> Verdict:
    """Score and decide; raises ``RequestError`` for requests that get no verdict."""
    size = len(request.message)
    if size == 0:
        raise RequestError(ErrorKind.INVALID_ARGUMENT, "message is empty")
    if size > max_message_bytes:
        raise RequestError(
            ErrorKind.INVALID_ARGUMENT,
            f"message is {size} bytes, above the server's limit of {max_message_bytes} bytes",
        )
    if request.policy and request.policy != policy.name:
        raise RequestError(ErrorKind.INVALID_ARGUMENT, f"unknown policy {request.policy!r}")
    if time_remaining is not None and time_remaining <= 0:
        raise RequestError(ErrorKind.DEADLINE_EXCEEDED, "deadline passed before scoring")
    try:
        scorer = holder.current()
    except NoModelError as exc:
        raise RequestError(ErrorKind.UNAVAILABLE, "no model loaded yet") from exc
    score = scorer.score(request.message, top_k=max(policy.max_reasons, 0))
    decision = policy.decide(score.probability, scorer.artifact.operating_points)
    action = decision.action
    headers: list[tuple[str, str]] = []
    if action != Action.DELIVER or policy.info_headers:
        headers = [
            ("X-Spam-Flag", "YES" if action != Action.DELIVER else "NO"),
            ("X-Spam-Probability", f"{score.probability:.4f}"),
            ("X-Spam-Action", action.name),
            ("X-Spam-Model", score.model_version),
        ]
        if score.reasons:
            headers.append(("X-Spam-Reasons", _reasons_header(score.reasons)))
    return Verdict(
        correlation_id=request.correlation_id,
        spam_probability=score.probability,
        action=action,
        add_headers=tuple(headers),
        subject_tag=policy.subject_tag if action == Action.TAG else "",
        reroute_to=policy.reroute_to if action == Action.REROUTE else "",
        reject_text=policy.reject_text if action == Action.REJECT else "",
        reasons=score.reasons,
        model_version=score.model_version,
        scanned=True,
        list_decision="",
        limits_cut=score.cut,
        threshold=decision.threshold,
        policy=policy.name,
    )


def verdict_dict(v: Verdict) -> dict[str, object]:
    """JSON-able form (CLI output)."""
    return {
        "correlation_id": v.correlation_id,
        "spam_probability": round(v.spam_probability, 6),
        "action": v.action.name,
        "threshold": v.threshold,
        "model_version": v.model_version,
        "scanned": v.scanned,
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
    }
