"""spamgate: spam verdicts for mail gateways.

The public surface for gateway code is what ``__all__`` names below; everything
else (``spamgate.model``, ``spamgate.training``, ``spamgate.service``) is the
implementation, laid out by the flow in DEVELOPERS.md, and may change between
releases. Names load on first use, so ``import spamgate.model.parse`` (training,
the scoring workers) does not pull in gRPC.

    from spamgate import SpamGateClient, envelope, plan, verdict_from_proto

    with SpamGateClient("127.0.0.1:50051", timeout=5) as client:
        answer = client.classify(raw, envelope(client_ip="192.0.2.1", mail_from="a@b.example"))
        steps = plan(verdict_from_proto(answer))  # what a hook does: headers, tag, reroute, reject
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spamgate.model.errors import ConfigurationError, SpamgateError
    from spamgate.service.api.client import SpamGateClient, envelope
    from spamgate.service.api.proto_gen.spamgate_pb2 import (
        Action,
        ClassifyRequest,
        ClassifyResponse,
        Envelope,
        Reason,
    )
    from spamgate.service.api.proto_convert import verdict_from_proto
    from spamgate.service.mta.plan import Plan, plan
    from spamgate.service.scoring.verdict import Verdict

__all__ = [
    "Action",
    "ClassifyRequest",
    "ClassifyResponse",
    "ConfigurationError",
    "Envelope",
    "Plan",
    "Reason",
    "SpamGateClient",
    "SpamgateError",
    "Verdict",
    "envelope",
    "plan",
    "verdict_from_proto",
]

# Where each public name lives (loaded on first access, PEP 562).
_HOMES = {
    "SpamGateClient": "spamgate.service.api.client",
    "envelope": "spamgate.service.api.client",
    "Action": "spamgate.service.api.proto_gen.spamgate_pb2",
    "ClassifyRequest": "spamgate.service.api.proto_gen.spamgate_pb2",
    "ClassifyResponse": "spamgate.service.api.proto_gen.spamgate_pb2",
    "Envelope": "spamgate.service.api.proto_gen.spamgate_pb2",
    "Reason": "spamgate.service.api.proto_gen.spamgate_pb2",
    "verdict_from_proto": "spamgate.service.api.proto_convert",
    "Verdict": "spamgate.service.scoring.verdict",
    "Plan": "spamgate.service.mta.plan",
    "plan": "spamgate.service.mta.plan",
    "SpamgateError": "spamgate.model.errors",
    "ConfigurationError": "spamgate.model.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'spamgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
