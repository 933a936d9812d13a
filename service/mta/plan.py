"""What an MTA hook does with a verdict: shared by the milter and the ``spamgate check`` pipe filter.

Fail modes when the service is down, slow or answers an error:
- ``open``: accept the mail, marked with a header saying it was not scanned.
  No mail is delayed, but spam gets through while the service is down.
- ``tempfail``: answer 451 (SMTP) / exit 75 (EX_TEMPFAIL, pipes); the sending
  MTA keeps the mail and retries later. Nothing is lost or let through
  unscanned, but mail is delayed for as long as the service is down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spamgate.service.scoring.verdict import Verdict

FAIL_MODES = ("open", "tempfail")
STATUS_HEADER = "X-Spam-Status"
ORIGINAL_RCPT_HEADER = "X-Spam-Original-Recipients"


@dataclass(frozen=True)
class Plan:
    """The concrete steps for one message."""

    action: str  # DELIVER, TAG, REROUTE, REJECT, DELETE
    add_headers: tuple[tuple[str, str], ...]
    subject_tag: str
    reroute_to: str
    reply_code: str
    reply_xcode: str
    reply_text: str


def plan(resp: Verdict, status_header: bool = True) -> Plan:
    """Turn a verdict into steps; the top-level (strictest-group) action applies to the whole message.

    Takes the plain verdict: a hook that asked a server converts the answer first
    (``service.api.proto_convert.verdict_from_proto``), one that scored in process has it.
    """
    action = resp.action.name
    headers = list(resp.add_headers)
    if status_header:
        headers.append((STATUS_HEADER, status_value(resp)))
    code, xcode, text = "", "", ""
    if action == "REJECT":
        code = "550"
        m = re.match(r"\s*(\d\.\d{1,3}\.\d{1,3})\s+(.*)", resp.reject_text or "")
        xcode, text = (
            (m.group(1), m.group(2)) if m else ("5.7.1", resp.reject_text or "Message rejected as spam")
        )
    return Plan(action, tuple(headers), resp.subject_tag, resp.reroute_to, code, xcode, text)


def status_value(resp: Verdict) -> str:
    action = resp.action.name
    flag = "No" if action == "DELIVER" else "Yes"
    if not resp.scanned:
        return f"{flag}, action={action}, not scanned ({resp.list_decision})"
    return f"{flag}, p={resp.spam_probability:.4f}, action={action}, model={resp.model_version}"


def unscanned_status(why: str) -> tuple[str, str]:
    return STATUS_HEADER, f"Unknown, not scanned ({why})"


def tagged_subject(subject: str | None, tag: str) -> str:
    """Subject with the tag in front (once: a re-scanned message is not tagged twice)."""
    s = subject or ""
    return s if s.startswith(tag.strip()) else tag + s


def rewrite_message(raw: bytes, p: Plan) -> bytes:
    """The message with the plan's headers added and subject tagged (pipe filters)."""
    sep = b"\r\n" if b"\r\n" in raw[:2048] else b"\n"
    head_end = raw.find(sep + sep)
    head, body = (raw, b"") if head_end < 0 else (raw[: head_end + len(sep)], raw[head_end + len(sep) :])
    if p.subject_tag:
        m = re.search(rb"(?im)^subject:[ \t]?", head)
        if m:
            line_end = head.find(sep, m.end())
            current = head[m.end() : line_end if line_end >= 0 else len(head)].decode(
                "utf-8", "surrogateescape"
            )
            new = tagged_subject(current, p.subject_tag).encode("utf-8", "surrogateescape")
            head = head[: m.end()] + new + (head[line_end:] if line_end >= 0 else b"")
        else:
            head = head + b"Subject: " + p.subject_tag.strip().encode() + sep
    extra = b"".join(f"{n}: {v}".encode("utf-8", "replace") + sep for n, v in p.add_headers)
    if p.action == "REROUTE" and p.reroute_to:
        extra += f"X-Spam-Reroute-To: {p.reroute_to}".encode() + sep
    return extra + head + (body if head_end >= 0 else b"")
