"""Raw RFC 822 bytes → ``MessageView``, within ``ParseLimits``, never raising.

Choices:
- ``email`` with the ``compat32`` policy: the modern policy builds header
  objects eagerly and raises on some malformed headers; compat32 keeps raw
  values, which we decode ourselves with a fallback per encoded word.
- The raw bytes are cut at ``max_bytes`` *before* parsing, so parse time is
  bounded by the limit, not by what a sender chose to send.
- Text is decoded with the declared charset and ``errors="replace"``; an
  unknown charset falls back to UTF-8 then Latin-1 (every byte string is valid
  Latin-1, so this never fails).
"""

from __future__ import annotations

import email
import email.header
import email.utils
import re
from datetime import UTC, datetime
from email.message import Message
from email.policy import compat32

from model.html_text import html_to_text
from model.limits import ParseLimits
from model.message import Address, Attachment, Link, MessageView, ReceivedHop
from model.urls import find_urls, url_host

DEFAULT_LIMITS = ParseLimits()
# Raw bytes kept in the view for byte n-gram features (model.features).
MAX_RAW_PREFIX = 16384

_RCVD_FROM = re.compile(r"\bfrom\s+([^\s;()]+)?\s*(\([^)]{0,300}\))?", re.IGNORECASE)
_RCVD_BY = re.compile(r"\bby\s+([^\s;()]+)", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_SURROGATE = re.compile("[\udc80-\udcff]")
_RDNS = re.compile(r"\(([a-z0-9][a-z0-9.-]*\.[a-z]{2,})[\s\[]", re.IGNORECASE)

# Leading bytes of file formats worth knowing apart from what a part declares.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "application/x-msdownload"),
    (b"\x7fELF", "application/x-elf"),
    (b"PK\x03\x04", "application/zip"),
    (b"Rar!", "application/x-rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"\x1f\x8b", "application/gzip"),
    (b"%PDF", "application/pdf"),
    (b"\xd0\xcf\x11\xe0", "application/x-ole-storage"),
    (b"\x89PNG", "image/png"),
    (b"GIF8", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"{\\rtf", "text/rtf"),
)


def sniff_type(payload: bytes) -> str:
    """Content type from leading bytes; ``application/octet-stream`` if unknown."""
    for magic, ctype in _MAGIC:
        if payload.startswith(magic):
            return ctype
    head = payload[:512].lstrip().lower()
    if head.startswith((b"<html", b"<!doctype html")):
        return "text/html"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head[:256]):
        return "text/plain"
    return "application/octet-stream"


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, falling back to UTF-8 then Latin-1."""
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return data.decode(cs, errors="replace" if cs != "utf-8" else "strict")
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("latin-1")


def decode_header_value(value: object) -> str:
    """Decode RFC 2047 encoded words; tolerant of bad charsets and raw 8-bit."""
    if isinstance(value, email.header.Header):
        value = str(value)
    if not isinstance(value, str):
        return ""
    # compat32 keeps raw 8-bit bytes as surrogate escapes; recover them as UTF-8/Latin-1.
    if _SURROGATE.search(value):
        value = decode_bytes(value.encode("utf-8", "surrogateescape"), "utf-8")
    if "=?" not in value:
        return " ".join(value.split())
    try:
        chunks = email.header.decode_header(value)
    except Exception:
        return " ".join(value.split())
    out: list[str] = []
    for chunk, cs in chunks:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, cs if cs and cs != "unknown-8bit" else None))
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def _parse_address(value: str | None) -> Address | None:
    if not value:
        return None
    try:
        display, addr = email.utils.parseaddr(value)
    except Exception:
        return Address(display="", address=value.strip()[:320])
    return Address(display=display.strip()[:320], address=addr.strip()[:320])


def _count_addresses(values: list[str]) -> int:
    if not values:
        return 0
    try:
        return sum(1 for _, a in email.utils.getaddresses(values) if "@" in a)
    except Exception:
        return sum(v.count("@") for v in values)


def parse_date(value: str | None) -> datetime | None:
    """RFC 5322 date → aware UTC datetime; None when absent or unparseable."""
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def parse_received(value: str) -> ReceivedHop:
    """Pick HELO, reverse DNS, connecting IP, receiving host and time from one hop."""
    head, _, when = value.rpartition(";")
    if not head:
        head, when = value, ""
    helo = rdns = ip = by = ""
    m = _RCVD_FROM.search(head)
    if m:
        helo = (m.group(1) or "").strip("[]").lower()
        paren = m.group(2) or ""
        ipm = _IPV4.search(paren) or _IPV4.search(m.group(0))
        ip = ipm.group(1) if ipm else ""
        rm = _RDNS.search(paren + " ")
        rdns = rm.group(1).lower() if rm else ""
    b = _RCVD_BY.search(head)
    if b:
        by = b.group(1).lower()
    return ReceivedHop(raw=value[:500], helo=helo, rdns=rdns, ip=ip, by=by, date=parse_date(when))


def _split_headers(raw: bytes, limits: ParseLimits, cut: list[str]) -> bytes:
    end = raw.find(b"\n\n")
    end_crlf = raw.find(b"\r\n\r\n")
    ends = [e for e in (end, end_crlf) if e >= 0]
    header_end = min(ends) if ends else len(raw)
    if header_end > limits.max_header_bytes:
        cut.append(f"header_bytes>{limits.max_header_bytes}")
        # Keep the first max_header_bytes of headers, cut at a line end, then the body.
        keep = raw[: limits.max_header_bytes]
        nl = keep.rfind(b"\n")
        keep = keep[: nl + 1] if nl > 0 else keep
        return keep + b"\n" + raw[header_end:].lstrip(b"\r\n")
    return raw


def parse_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> MessageView:
    """Parse raw message bytes into a ``MessageView``. Never raises."""
    view = MessageView(raw_size=len(raw) if isinstance(raw, bytes | bytearray) else 0)
    try:
        _parse_into(view, bytes(raw), limits)
    except Exception as exc:  # the contract: a best-effort view for any input
        view.cut.append(f"parse_error:{type(exc).__name__}")
        if not view.text:
            view.text = bytes(raw[: limits.max_text_chars]).decode("latin-1", "replace")
    return view


def _parse_into(view: MessageView, raw: bytes, limits: ParseLimits) -> None:
    cut = view.cut
    view.raw_prefix = raw[:MAX_RAW_PREFIX]
    if len(raw) > limits.max_bytes:
        cut.append(f"bytes>{limits.max_bytes}")
        raw = raw[: limits.max_bytes]
    raw = _split_headers(raw, limits, cut)
    msg = email.message_from_bytes(raw, policy=compat32)
    view.defects = len(msg.defects)

    for name, value in msg.raw_items():
        view.headers.append((str(name), decode_header_value(value)))

    view.subject = view.header("Subject") or ""
    view.from_addr = _parse_address(view.header("From"))
    view.reply_to = _parse_address(view.header("Reply-To"))
    view.return_path = (view.header("Return-Path") or "").strip().strip("<>").lower()
    view.to_count = _count_addresses(view.header_all("To"))
    view.cc_count = _count_addresses(view.header_all("Cc"))
    mid = view.header("Message-ID")
    view.message_id = mid.strip() if mid is not None else None
    view.date_raw = view.header("Date")
    view.date = parse_date(view.date_raw)
    view.received = [parse_received(v) for v in view.header_all("Received")[:50]]

    _walk_parts(view, msg, limits)


def _walk_parts(view: MessageView, root: Message, limits: ParseLimits) -> None:
    texts: list[str] = []
    htmls: list[str] = []
    text_chars = 0
    parts_seen = 0
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        parts_seen += 1
        if parts_seen > limits.max_parts:
            view.cut.append(f"parts>{limits.max_parts}")
            break
        view.defects += len(getattr(part, "defects", []) or [])
        ctype = part.get_content_type()
        if len(view.content_types) < 50:
            view.content_types.append(ctype)
        if part.is_multipart():
            if depth >= limits.max_mime_depth:
                if f"mime_depth>{limits.max_mime_depth}" not in view.cut:
                    view.cut.append(f"mime_depth>{limits.max_mime_depth}")
                continue
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
            continue
        filename = decode_header_value(part.get_filename() or "")
        disposition = (part.get("Content-Disposition") or "").lower()
        try:
            payload_bytes = part.get_payload(decode=True) or b""
        except Exception:
            payload_bytes = b""
            view.defects += 1
        if not isinstance(payload_bytes, bytes):
            payload_bytes = b""
        is_text = ctype in ("text/plain", "text/html") and not filename and "attachment" not in disposition
        if not is_text:
            if ctype.startswith("image/") and not filename:
                view.image_count += 1
            view.attachments.append(
                Attachment(
                    filename=filename[:255],
                    declared_type=ctype,
                    sniffed_type=sniff_type(payload_bytes),
                    size=len(payload_bytes),
                )
            )
            continue
        charset = part.get_content_charset()
        if charset and charset not in view.charsets:
            view.charsets.append(charset)
        cte = str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()
        if cte:
            view.text_transfer_encodings.append(cte)
        text = decode_bytes(payload_bytes, charset)
        if text_chars + len(text) > limits.max_text_chars:
            text = text[: max(0, limits.max_text_chars - text_chars)]
            if f"text_chars>{limits.max_text_chars}" not in view.cut:
                view.cut.append(f"text_chars>{limits.max_text_chars}")
        text_chars += len(text)
        if ctype == "text/html":
            view.text_html_parts += 1
            htmls.append(text)
        else:
            view.text_plain_parts += 1
            texts.append(text)

    view.text = "\n".join(texts)
    url_text = [view.text]
    if htmls:
        html = "\n".join(htmls)
        if len(html) > limits.max_html_chars:
            view.cut.append(f"html_chars>{limits.max_html_chars}")
            html = html[: limits.max_html_chars]
        ext = html_to_text(html, max_links=limits.max_urls)
        view.html_text = ext.visible_text
        view.hidden_text_chars = ext.hidden_chars
        view.html_has_script = ext.has_script
        view.html_has_form = ext.has_form
        view.links = [Link(text=t[:300], href=h[:1000]) for t, h in ext.links]
        view.image_count += ext.image_count
        url_text.append(view.html_text)
        url_text.extend(h for _, h in ext.links)
    view.urls = find_urls("\n".join(url_text), limits.max_urls)
    view.url_hosts = [url_host(u) for u in view.urls]
