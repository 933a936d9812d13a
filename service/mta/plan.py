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
# Server refusals that say the hook is set up wrong, not that the service is down: a token the server
# does not know or whose role may not classify, or a message size or policy name the server refuses
# (--max-bytes above its max_message_bytes). No fail mode applies to them: ``spamgate check`` exits 78,
# the milter answers 451 (in open mode they had passed every message unscanned, in tempfail mode they
# were logged as "unavailable"). Classify's INVALID_ARGUMENT comes from no message content: size, an
# empty message (both hooks refuse that before asking) and the policy name.
CONFIGURATION_STATUSES = ("UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT")
# A TLS handshake the hook itself failed is UNAVAILABLE too, like a service that is down, but says the
# hook's TLS settings do not fit the server: the wrong CA (CERTIFICATE_VERIFY_FAILED), a name the
# certificate does not hold, TLS to a plaintext listener (WRONG_VERSION_NUMBER) all read "Tls handshake
# failed" in gRPC's details (measured with grpcio against the test suite's PKI). In open mode they passed
# every message unscanned (MTA attack review). A handshake the server refuses (a client certificate from
# another CA, none, or plaintext to a TLS listener) reaches the client only as "Socket closed", which a
# server going away also gives: those still follow the fail mode.
_TLS_SETUP_FAILURE = re.compile(
    r"Tls handshake failed|Peer name \S+ is not in peer certificate", re.IGNORECASE
)


def is_configuration_refusal(code_name: str, details: str) -> bool:
    """Whether a failed call means the hook is set up wrong (no fail mode applies), not an outage."""
    if code_name in CONFIGURATION_STATUSES:
        return True
    return code_name == "UNAVAILABLE" and _TLS_SETUP_FAILURE.search(details or "") is not None


STATUS_HEADER = "X-Spam-Status"
ORIGINAL_RCPT_HEADER = "X-Spam-Original-Recipients"
REROUTE_HEADER = "X-Spam-Reroute-To"


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


# A Subject field of the header block, however written: RFC 5322's obsolete syntax allows blanks before
# the colon (``Subject : x``), and readers take it as the Subject; missing it once made the filter add a
# second, tagged Subject that mail clients did not show (attack review F6).
_SUBJECT = re.compile(rb"(?im)^subject[ \t]*:[ \t]?")
# The header block ends at its first empty line, LF or CRLF, or at the start for a message that opens
# with one. Never a guess of the message's line end: LF headers with a CRLF body (seen from scripts
# that write the headers themselves) had the end searched as CRLFCRLF, found in the body, and the
# Subject written between two body paragraphs (F6). An LF line after a CRLF one and a CRLF line after
# an LF one end it too, as mail readers (Python's email parser) and MTAs read it.
_BLANK_LINE = re.compile(rb"(?:\A|(\n))\r?\n")


def header_block_end(raw: bytes) -> int:
    """Offset just past the header block's last line end; ``len(raw)`` if there is no empty line.

    0 for a message that starts with an empty line (an empty header block), where headers go first.
    """
    m = _BLANK_LINE.search(raw)
    if m is None:
        return len(raw)
    return m.end(1) if m.group(1) is not None else 0


def header_line_end(raw: bytes) -> bytes:
    """The line end for a header line added to ``raw``: the header block's own (CRLF if its first
    line ends in CRLF; that of the empty line for an empty header block), else LF."""
    head = raw[: header_block_end(raw)] or raw[:2]
    nl = head.find(b"\n")
    return b"\r\n" if nl > 0 and head[nl - 1 : nl] == b"\r" else b"\n"


def header_lines(headers: tuple[tuple[str, str], ...], line_end: bytes) -> bytes:
    return b"".join(f"{n}: {v}".encode("utf-8", "replace") + line_end for n, v in headers)


# A leading mbox "From " line (no colon: "From :" is the obsolete form of a From field). procmail hands
# a filter the message with it; added headers written above it had procmail escape it as ">From", and
# the mbox ran that message and the one before it together (formail -s counted 1 of 2; review of the
# MTA hooks, seventh session).
_FROM_LINE = re.compile(rb"From (?![ \t]*:)[^\n]*\n")
_LINE = re.compile(rb"[^\n]*\n|[^\n]+")  # LF ends a line; a bare CR is part of it


def without_fields(head: bytes, names: tuple[str, ...]) -> bytes:
    """``head`` less every field named one of ``names`` (any case), continuation lines and all.

    The sender writes every byte: its own ``X-Spam-Flag: NO`` or ``X-Spam-Reroute-To: attacker@…``
    stayed below the hook's, and a reader of the first occurrence or of all of them (``formail -x``)
    took the sender's.
    """
    wanted = {n.lower().encode("utf-8", "replace") for n in names}
    out: list[bytes] = []
    dropping = False
    for line in _LINE.findall(head):
        if not line.startswith((b" ", b"\t")):  # a field's first line (a continuation keeps the state)
            dropping = line.split(b":", 1)[0].rstrip(b" \t").lower() in wanted if b":" in line else False
        if not dropping:
            out.append(line)
    return b"".join(out)


def rewrite_message(raw: bytes, p: Plan) -> bytes:
    """The message with the plan's headers added in front and the subject tagged (pipe filters).

    Byte for byte the original otherwise: the added lines take the header block's line end, the tag
    goes in front of every Subject value of the header block (a ``Subject:`` line in the body is
    the body's), and with no Subject there, one is added as the header block's last line, after a line
    end of its own if the block has none (``To: b`` as the last bytes once became ``To: bSubject: …``).
    Fields of the header block named as an added header (or ``X-Spam-Reroute-To``) are the sender's
    and removed; a leading mbox "From " line stays first.
    """
    lead = _FROM_LINE.match(raw)
    prefix = lead.group(0) if lead else b""
    raw = raw[len(prefix) :]
    end = header_block_end(raw)
    head, rest = raw[:end], raw[end:]
    le = header_line_end(raw)
    added = p.add_headers
    if p.action == "REROUTE" and p.reroute_to:
        added += ((REROUTE_HEADER, p.reroute_to),)
    head = without_fields(head, (*(n for n, _ in added), REROUTE_HEADER))
    if p.subject_tag:
        # Every Subject field of the header block (with two, a client that shows the second showed no
        # tag: MTA attack review), in one pass: splicing each into the whole block in turn was
        # quadratic, 0.8 s for 40,000 Subject lines and minutes for a 10 MB header block of them.
        pieces: list[bytes] = []
        done = 0
        for m in _SUBJECT.finditer(head):
            nl = head.find(b"\n", m.end())
            stop = len(head) if nl < 0 else nl  # the value's first line (a CR before the LF stays in it)
            current = head[m.end() : stop].decode("utf-8", "surrogateescape")
            pieces += (
                head[done : m.end()],
                tagged_subject(current, p.subject_tag).encode("utf-8", "surrogateescape"),
            )
            done = stop
        found = bool(pieces)
        head = b"".join(pieces) + head[done:]
        if not found:
            if head and not head.endswith(b"\n"):
                head += le
            head += b"Subject: " + p.subject_tag.strip().encode() + le
    return prefix + header_lines(added, le) + head + rest
