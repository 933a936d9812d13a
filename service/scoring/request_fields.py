"""The caps on a request's fields, checked where a request enters (gRPC or in-process)."""

from __future__ import annotations

from spamgate.model.errors import ErrorKind
from spamgate.service.scoring.verdict import Envelope, Request, RequestError

# Every request field is capped where it enters (INVALID_ARGUMENT naming the field and
# its limit), before any work: the cut-offs are generous for real mail (RFC 5321 paths
# are at most 256 octets, Postfix accepts 1,000 recipients per message by default) and
# keep what one request can make the server hold, log and answer small.
FIELD_LIMITS = {
    "correlation_id": 256,
    "policy": 128,
    "envelope.client_ip": 64,
    "envelope.helo": 512,
    "envelope.mail_from": 512,
    "envelope.rcpt_to[]": 512,
    "reporter": 256,
    "verdict_id": 64,  # a sha256 in hex
}
MAX_RECIPIENTS = 1000


def check_field(name: str, value: str) -> None:
    """Raise INVALID_ARGUMENT if ``value`` is longer than ``FIELD_LIMITS[name]``."""
    limit = FIELD_LIMITS[name.split("[")[0] + "[]" if "[" in name else name]
    if len(value) > limit:
        raise RequestError(
            ErrorKind.INVALID_ARGUMENT, f"{name} is {len(value)} characters, above the limit of {limit}"
        )


def checked_request(
    message: bytes, envelope: Envelope, correlation_id: str = "", policy: str = ""
) -> Request:
    """The request, after checking every field against its cap (``RequestError`` naming the field)."""
    check_field("correlation_id", correlation_id)
    check_field("policy", policy)
    check_field("envelope.client_ip", envelope.client_ip)
    check_field("envelope.helo", envelope.helo)
    check_field("envelope.mail_from", envelope.mail_from)
    if len(envelope.rcpt_to) > MAX_RECIPIENTS:
        raise RequestError(
            ErrorKind.INVALID_ARGUMENT,
            f"envelope.rcpt_to has {len(envelope.rcpt_to)} recipients, above the limit of {MAX_RECIPIENTS}",
        )
    for i, rcpt in enumerate(envelope.rcpt_to):
        check_field(f"envelope.rcpt_to[{i}]", rcpt)
    return Request(message=message, envelope=envelope, correlation_id=correlation_id, policy=policy)
