"""The one translation between the wire (``spamgate.v1`` protobuf) and the plain types of ``service.scoring``.

The servicer, the CLI and the MTA hooks convert here and nowhere else, so a field added
to the ``.proto`` is mapped once (issue 18: a verdict had been serialised three ways).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from spamgate.model.manifest import OperatingPoint
from spamgate.model.scoring import Reason
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.policy.policy_file import PolicyHolder, ReloadResult
from spamgate.service.policy.settings import Action
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.request_fields import checked_request
from spamgate.service.scoring.verdict import Envelope, GroupResult, Request, Verdict


def request_from_proto(req: pb.ClassifyRequest) -> Request:
    """The plain request, after checking every field against its cap."""
    e = req.envelope
    envelope = Envelope(e.client_ip, e.helo, e.mail_from, tuple(e.rcpt_to))
    return checked_request(req.message, envelope, req.correlation_id, req.policy)


def verdict_to_proto(v: Verdict) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(
        correlation_id=v.correlation_id,
        spam_probability=v.spam_probability,
        action=_action(v.action),
        add_headers=[pb.Header(name=n, value=val) for n, val in v.add_headers],
        subject_tag=v.subject_tag,
        reroute_to=v.reroute_to,
        reasons=[pb.Reason(name=r.name, kind=r.kind, contribution=r.contribution) for r in v.reasons],
        model_version=v.model_version,
        scanned=v.scanned,
        list_decision=v.list_decision,
        limits_cut=list(v.limits_cut),
        threshold=v.threshold,
        policy=v.policy,
        reject_text=v.reject_text,
        groups=[
            pb.RecipientGroup(
                recipients=list(g.recipients),
                policy=g.policy,
                action=_action(g.action),
                threshold=g.threshold,
                list_decision=g.list_decision,
                add_headers=[pb.Header(name=n, value=val) for n, val in g.add_headers],
                subject_tag=g.subject_tag,
                reroute_to=g.reroute_to,
                reject_text=g.reject_text,
            )
            for g in v.groups
        ],
        policy_version=v.policy_version,
        verdict_id=v.verdict_id,
        unfamiliar=v.unfamiliar,
    )


def verdict_from_proto(r: pb.ClassifyResponse) -> Verdict:
    """The inverse of ``verdict_to_proto``: a client turns an answer back into the verdict it was.

    With it the CLI prints one JSON shape (``verdict_dict``) whether it scored in process or
    asked a server (issue 18: ``classify --json`` differed with and without ``--server``).
    """

    def headers(hs: Any) -> tuple[tuple[str, str], ...]:
        return tuple((h.name, h.value) for h in hs)

    return Verdict(
        correlation_id=r.correlation_id,
        spam_probability=r.spam_probability,
        action=_action_of(r.action),
        add_headers=headers(r.add_headers),
        subject_tag=r.subject_tag,
        reroute_to=r.reroute_to,
        reject_text=r.reject_text,
        reasons=tuple(Reason(x.name, x.kind, x.contribution) for x in r.reasons),
        model_version=r.model_version,
        scanned=r.scanned,
        list_decision=r.list_decision,
        limits_cut=tuple(r.limits_cut),
        threshold=r.threshold,
        policy=r.policy,
        policy_version=r.policy_version,
        groups=tuple(
            GroupResult(
                recipients=tuple(g.recipients),
                policy=g.policy,
                action=_action_of(g.action),
                threshold=g.threshold,
                list_decision=g.list_decision,
                add_headers=headers(g.add_headers),
                subject_tag=g.subject_tag,
                reroute_to=g.reroute_to,
                reject_text=g.reject_text,
            )
            for g in r.groups
        ),
        verdict_id=r.verdict_id,
        unfamiliar=r.unfamiliar,
    )


def _action_of(value: int) -> Action:
    return Action[pb.Action.Name(value).removeprefix("ACTION_")]


def _action(a: Action) -> Any:
    """The proto enum value of an action (same numbers; looked up by name to stay honest)."""
    return pb.Action.Value("ACTION_" + a.name)


def policy_info(
    policies: PolicyHolder, holder: ModelHolder, result: ReloadResult | None = None
) -> pb.PolicyInfo:
    pol = policies.current()
    points = holder.current().artifact.policy_points if holder.loaded else []
    thresholds = []
    for name, settings in [(pol.name, pol.settings), *((d.name, d.settings) for d in pol.domains)]:
        for action, p, label in settings.resolve(points):
            thresholds.append(
                pb.EffectiveThreshold(policy=name, action=_action(action), threshold=p, description=label)
            )
    sizes = {f"allow.{k}": v for k, v in pol.allow.sizes().items()}
    sizes.update({f"block.{k}": v for k, v in pol.block.sizes().items()})
    return pb.PolicyInfo(
        version=pol.version,
        source=pol.source,
        loaded_at=policies.loaded_at,
        reloaded=bool(result and result.reloaded),
        errors=result.errors if result else policies.last_errors,
        thresholds=thresholds,
        list_sizes=sizes,
    )


def _points_pb(points: Sequence[OperatingPoint]) -> list[pb.OperatingPoint]:
    return [
        pb.OperatingPoint(
            name=p.name,
            target_fpr=p.target_fpr,
            threshold=p.threshold,
            fpr=p.fpr,
            catch_rate=p.catch,
            extrapolated=p.extrapolated,
        )
        for p in points
    ]


def model_info(holder: ModelHolder, policy_version: str = "") -> pb.ModelInfo:
    art = holder.current().artifact
    m = art.info
    return pb.ModelInfo(
        model_version=m.version,
        feature_version=m.feature_version,
        created=m.created,
        training_messages=m.training_messages,
        corpora=list(m.corpora),
        operating_points=_points_pb(m.operating_points),
        new_site_operating_points=_points_pb(m.new_site_operating_points),
        new_site_text_only_operating_points=_points_pb(m.new_site_text_only_points),
        site_reports=m.site_reports,
        validation_one_minus_roca_pct=m.validation_one_minus_roca_pct,
        validation_roc_auc=m.validation_roc_auc,
        manifest_json=json.dumps(art.manifest, sort_keys=True),
        policy_version=policy_version,
    )
