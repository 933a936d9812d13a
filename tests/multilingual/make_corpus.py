"""Build the hand-written multilingual test set: data/<lang>.txt → ham|spam/<lang>/NN-kind.eml.

    python tests/multilingual/make_corpus.py           # (re)write every .eml and SHA256SUMS
    python tests/multilingual/make_corpus.py --check   # exit 1 if a file would change
    python tests/multilingual/make_corpus.py --table   # the README's table

Every message's text was written for this set by hand (no corpus mail); this
script only dresses it as mail would arrive: headers (RFC 2047 encoded words,
Received hops from documentation address ranges, DKIM/Authentication-Results
for bulk senders), MIME structure, the declared charset and transfer
encoding. Output is deterministic (dates, Message-IDs and boundaries come
from hashes of the text), LF line endings throughout.

Rule: messages are only ever added, never edited to pass a filter. The
SHA256SUMS file pins every message's bytes; ``--check`` and
``tests/test_multilingual_set.py`` refuse a changed one.

Data file format (one file per language, ``data/<lang>.txt``)::

    @@ ham/01-business            where the message goes; kind = text after NN-
    from: Name <addr@domain>      display name in the language
    to: Name <addr@domain>
    subject: ...
    charset: iso-8859-2           default utf-8
    cte: quoted-printable         8bit (default) | 7bit | base64 | quoted-printable
    hdr: Q                        RFC 2047 encoding of non-ASCII headers, B (default) or Q
    format: plain                 plain (default) | html | alternative (text + HTML)
    attach: plan.pdf              optional: a small generated .pdf or .ics
    list: Name <list.id>          newsletter: List-Id, List-Unsubscribe, Precedence
    unsub: https://...            the unsubscribe URL (newsletters)
    reply-to: addr                optional
    dkim: yes                     sender signs (bulk and transactional senders)
    <blank line>
    body: paragraphs split by blank lines; [text](href) links, "> " quotes,
    "- " list items, "# " headings, "| a | b |" table rows (HTML only).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import quopri
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SUMS = HERE / "SHA256SUMS"

# code: (English name, script, characters every message of the language must contain one of)
LANGS: dict[str, tuple[str, str, str]] = {
    "de": ("German", "Latin", "äöüßÄÖÜ"),
    "fr": ("French", "Latin", "éèêàçùâîôœÉÀ"),
    "es": ("Spanish", "Latin", "ñáéíóúü¿¡Ñ"),
    "pl": ("Polish", "Latin", "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"),
    "tr": ("Turkish", "Latin", "ğıİşŞçÇöÖüÜĞ"),
    "ru": ("Russian", "Cyrillic", "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЭЮЯ"),
    "uk": ("Ukrainian", "Cyrillic", "іїєґІЇЄҐ"),
    "zh": ("Chinese (Simplified)", "Han", "的是了我不在人们有来这"),
    "ja": ("Japanese", "Han+Kana", "のはをにがでしてますですお"),
    "ko": ("Korean", "Hangul", "의는을를이가에서하다니습"),
    "ar": ("Arabic", "Arabic", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"),
    "hi": ("Hindi", "Devanagari", "कखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह"),
    "el": ("Greek", "Greek", "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώ"),
    "he": ("Hebrew", "Hebrew", "אבגדהוזחטיכלמנסעפצקרשת"),
    "th": ("Thai", "Thai", "กขคงจฉชซญดตถทธนบปผพฟมยรลวศสหอฮ"),
}

# UTC offset (hours) and zone name of each language's senders, for Date and Received.
ZONES: dict[str, tuple[int, str]] = {
    "de": (2, "CEST"),
    "fr": (2, "CEST"),
    "es": (2, "CEST"),
    "pl": (2, "CEST"),
    "tr": (3, "+03"),
    "ru": (3, "MSK"),
    "uk": (3, "EEST"),
    "zh": (8, "CST"),
    "ja": (9, "JST"),
    "ko": (9, "KST"),
    "ar": (3, "+03"),
    "hi": (5, "IST"),
    "el": (3, "EEST"),
    "he": (3, "IDT"),
    "th": (7, "+07"),
}
HALF_HOUR = {"hi"}

MAILERS = (
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.3.1",
    "X-Mailer: Microsoft Outlook 16.0",
    "X-Mailer: Apple Mail (2.3774.600.62)",
    "User-Agent: Roundcube Webmail/1.6.9",
    "X-Mailer: iPhone Mail (21G93)",
    "User-Agent: Mutt/2.2.12 (2023-09-09)",
)


@dataclass
class Msg:
    lang: str
    box: str  # ham | spam
    name: str  # NN-kind
    fields: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @property
    def kind(self) -> str:
        return self.name.split("-", 1)[1]

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)


def read_data(path: Path) -> list[Msg]:
    """Messages of one language's data file."""
    lang = path.stem
    out: list[Msg] = []
    for chunk in ("\n" + path.read_text("utf-8")).split("\n@@ ")[1:]:
        head, _, body = chunk.partition("\n\n")
        lines = head.split("\n")
        box, _, name = lines[0].strip().partition("/")
        m = Msg(lang, box, name)
        for line in lines[1:]:
            k, _, v = line.partition(":")
            m.fields[k.strip().lower()] = v.strip()
        m.body = body.strip("\n") + "\n"
        out.append(m)
    return out


# --- headers ---------------------------------------------------------------------------------------


def encoded_words(text: str, charset: str, mode: str) -> str:
    """RFC 2047 encoded words (each ≤ 75 chars, whole characters per word), folded."""
    if all(ord(c) < 128 for c in text):
        return text
    prefix = f"=?{charset}?{mode}?"
    words: list[str] = []
    cur = ""

    def enc(s: str) -> str:
        raw = s.encode(charset)
        if mode == "B":
            return base64.b64encode(raw).decode()
        out = []
        for b in raw:
            ch = chr(b)
            if ch == " ":
                out.append("_")
            elif (ch.isalnum() and b < 128) or (ch in "!*+-/" and b < 128):
                out.append(ch)
            else:
                out.append(f"={b:02X}")
        return "".join(out)

    for c in text:
        if len(prefix) + len(enc(cur + c)) + 2 > 75 and cur:
            words.append(prefix + enc(cur) + "?=")
            cur = ""
        cur += c
    if cur:
        words.append(prefix + enc(cur) + "?=")
    return "\n ".join(words)


def address(value: str, charset: str, mode: str) -> str:
    """``Name <addr>`` with the display name encoded if it is not ASCII."""
    m = re.match(r"^(.*?)\s*<([^>]+)>$", value)
    if not m:
        return value
    name, addr = m.group(1).strip().strip('"'), m.group(2)
    if not name:
        return f"<{addr}>"
    if all(ord(c) < 128 for c in name):
        return f'"{name}" <{addr}>' if re.search(r"[,.;:]", name) else f"{name} <{addr}>"
    return f"{encoded_words(name, charset, mode)} <{addr}>"


def domain_of(value: str) -> str:
    m = re.search(r"@([A-Za-z0-9.-]+)", value)
    return m.group(1).lower() if m else "example.com"


def addr_of(value: str) -> str:
    m = re.search(r"<([^>]+)>", value)
    return m.group(1) if m else value.strip()


def digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def rfc822_date(dt: datetime) -> str:
    return dt.strftime("%a, %d %b %Y %H:%M:%S %z")


# --- body ------------------------------------------------------------------------------------------

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def to_plain(body: str) -> str:
    """The markup as a plain-text mail body: links as ``text <url>``, tables as lines."""
    out = []
    for line in body.split("\n"):
        line = _LINK.sub(
            lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} <{m.group(2)}>", line
        )
        if line.startswith("# "):
            line = line[2:]
        elif line.startswith("|"):
            line = "  ".join(c.strip() for c in line.strip().strip("|").split("|"))
        out.append(line)
    return "\n".join(out)


def to_html(msg: Msg, subject: str, charset: str) -> str:
    """The markup as an HTML body (mail-client style: a table layout, inline styles)."""

    def inline(s: str) -> str:
        pos, parts = 0, []
        for m in _LINK.finditer(s):
            parts.append(html.escape(s[pos : m.start()], quote=False))
            href, text = html.escape(m.group(2)), html.escape(m.group(1), quote=False)
            parts.append(f'<a href="{href}" style="color:#1a5fb4">{text}</a>')
            pos = m.end()
        parts.append(html.escape(s[pos:], quote=False))
        return "".join(parts)

    rtl = msg.lang in ("ar", "he")
    blocks = re.split(r"\n\s*\n", msg.body.strip("\n"))
    body: list[str] = []
    for block in blocks:
        lines = block.split("\n")
        if all(ln.startswith(">") for ln in lines):
            q = "<br>\n".join(inline(ln.lstrip(">").strip()) for ln in lines)
            style = "border-left:2px solid #ccc;margin:0;padding-left:8px;color:#555"
            body.append(f'<blockquote style="{style}">{q}</blockquote>')
        elif all(ln.startswith("- ") for ln in lines):
            body.append("<ul>\n" + "\n".join(f"<li>{inline(ln[2:])}</li>" for ln in lines) + "\n</ul>")
        elif all(ln.startswith("|") for ln in lines):
            rows = []
            for ln in lines:
                cells = [c.strip() for c in ln.strip().strip("|").split("|")]
                rows.append(
                    "<tr>" + "".join(f'<td style="padding:4px 8px">{inline(c)}</td>' for c in cells) + "</tr>"
                )
            body.append(
                '<table cellpadding="0" cellspacing="0" style="border-collapse:collapse;width:100%">\n'
                + "\n".join(rows)
                + "\n</table>"
            )
        elif lines[0].startswith("# "):
            body.append(f'<h2 style="font-size:20px;margin:16px 0 8px">{inline(lines[0][2:])}</h2>')
            if lines[1:]:
                body.append("<p>" + "<br>\n".join(inline(ln) for ln in lines[1:]) + "</p>")
        else:
            body.append("<p>" + "<br>\n".join(inline(ln) for ln in lines) + "</p>")
    unsub = msg.get("unsub")
    if unsub:
        body.append(
            f'<p style="font-size:11px;color:#888"><a href="{html.escape(unsub)}" style="color:#888">'
            f"{html.escape(msg.get('unsub-text', 'Unsubscribe'), quote=False)}</a></p>"
        )
    direction = ' dir="rtl"' if rtl else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{msg.lang}"{direction}>\n<head>\n'
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(subject, quote=False)}</title>\n</head>\n"
        '<body style="margin:0;padding:0;background:#f4f4f4">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">\n'
        '<table role="presentation" width="600" cellpadding="16" cellspacing="0" '
        'style="background:#ffffff;font-family:Arial,sans-serif;font-size:15px;line-height:1.5;color:#222">'
        "<tr><td>\n" + "\n".join(body) + "\n</td></tr></table>\n</td></tr></table>\n</body>\n</html>\n"
    )


def encode_body(text: str, charset: str, cte: str) -> bytes:
    raw = text.encode(charset)  # strict: a character the charset lacks is an authoring error
    if cte == "base64":
        b = base64.b64encode(raw).decode()
        return ("\n".join(b[i : i + 76] for i in range(0, len(b), 76)) + "\n").encode()
    if cte == "quoted-printable":
        return quopri.encodestring(raw)
    if cte == "7bit" and any(b > 127 for b in raw):
        raise ValueError("7bit body with 8-bit bytes")
    for line in raw.split(b"\n"):
        if len(line) > 998:
            raise ValueError("line longer than 998 bytes")
    return raw


def text_part(ctype: str, text: str, charset: str, cte: str) -> bytes:
    head = f"Content-Type: {ctype}; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
    if ctype == "text/plain" and charset.lower() in ("iso-2022-jp",):
        head = f"Content-Type: {ctype}; charset={charset.upper()}\nContent-Transfer-Encoding: {cte}\n\n"
    return head.encode() + encode_body(text, charset, cte)


def attachment(name: str, msg: Msg) -> bytes:
    """A small generated attachment: a one-page PDF or an iCalendar invitation."""
    if name.endswith(".ics"):
        start = datetime(2025, 11, 3, 9, 0, tzinfo=UTC) + timedelta(days=len(msg.body) % 20)
        summary = msg.get("subject").replace(",", "\\,")
        ics = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example Calendar//EN\r\nMETHOD:REQUEST\r\n"
            "BEGIN:VEVENT\r\n"
            f"UID:{hashlib.sha1(msg.body.encode()).hexdigest()[:16]}@{domain_of(msg.get('from'))}\r\n"
            f"DTSTAMP:20251001T080000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
            f"DTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n"
            f"SUMMARY:{summary}\r\n"
            f"ORGANIZER:mailto:{addr_of(msg.get('from'))}\r\n"
            f"ATTENDEE;RSVP=TRUE:mailto:{addr_of(msg.get('to'))}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        ).encode()
        ctype = f'text/calendar; charset=UTF-8; method=REQUEST; name="{name}"'
        payload = ics
    else:
        label = f"{msg.lang.upper()}-{hashlib.sha1(msg.body.encode()).hexdigest()[:8]}"
        stream = f"BT /F1 14 Tf 72 760 Td (Document {label}) Tj ET".encode()
        objs = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> "
            b"/Contents 4 0 R >>",
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
        pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        offsets = []
        for i, o in enumerate(objs, 1):
            offsets.append(len(pdf))
            pdf += f"{i} 0 obj\n".encode() + o + b"\nendobj\n"
        xref = len(pdf)
        pdf += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
        pdf += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
        pdf += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
        ctype = f'application/pdf; name="{name}"'
        payload = pdf
    b = base64.b64encode(payload).decode()
    return (
        f'Content-Type: {ctype}\nContent-Disposition: attachment; filename="{name}"\n'
        "Content-Transfer-Encoding: base64\n\n"
        + "\n".join(b[i : i + 76] for i in range(0, len(b), 76))
        + "\n"
    ).encode()


def multipart(subtype: str, parts: list[bytes], boundary: str) -> tuple[str, bytes]:
    body = b"This is a multi-part message in MIME format.\n\n" if subtype == "mixed" else b""
    for p in parts:
        body += f"--{boundary}\n".encode() + p + b"\n"
    body += f"--{boundary}--\n".encode()
    return f'multipart/{subtype};\n boundary="{boundary}"', body


# --- whole message ---------------------------------------------------------------------------------


def build(msg: Msg) -> bytes:
    """Raw RFC 822 bytes of one message."""
    charset = msg.get("charset", "utf-8").lower()
    cte = msg.get("cte", "8bit").lower()
    mode = msg.get("hdr", "B").upper()
    fmt = msg.get("format", "plain")
    spam = msg.box == "spam"
    h = digest(msg.lang, msg.box, msg.name, msg.body)
    frm, to, subject = msg.get("from"), msg.get("to"), msg.get("subject")
    sdom, rdom = domain_of(frm), domain_of(to)

    off, zname = ZONES[msg.lang]
    tz = timezone(timedelta(hours=off, minutes=30 if msg.lang in HALF_HOUR else 0))
    # Ordinary mail is written 08:00-18:00 local time; spam at any hour.
    day = datetime(2025, 9, 1, tzinfo=tz) + timedelta(days=int.from_bytes(h[28:30], "big") % 75)
    minutes = int.from_bytes(h[0:2], "big") % (1440 if spam else 600) + (0 if spam else 480)
    sent_local = day + timedelta(minutes=minutes, seconds=h[2] % 60)
    sent = sent_local.astimezone(UTC)
    recv = sent + timedelta(seconds=2 + h[3] % 20)
    recv_local = recv.astimezone(tz)
    utc_note = f" ({zname})" if zname and not zname.startswith(("+", "-")) else ""

    # Received hops: the recipient's MX on top, then the sender's outbound relay.
    if spam:
        ip = f"203.0.113.{h[4] % 250 + 2}"
        helo = f"{['user', 'host', 'pc', 'dsl'][h[5] % 4]}-{h[6]}-{h[7]}.dyn.broadband.test"
        hops = [
            f"Received: from {helo} (unknown [{ip}])\n\tby mx1.{rdom} (Postfix) with ESMTP id "
            f"{h[8:13].hex().upper()}\n\tfor <{addr_of(to)}>; {rfc822_date(recv_local)}{utc_note}",
        ]
    else:
        out_ip = f"198.51.100.{h[4] % 250 + 2}"
        sub_ip = f"192.0.2.{h[5] % 250 + 2}"
        app = f"app{h[5] % 4 + 1}.internal.{sdom}"
        submit = "ESMTPSA" if fmt == "plain" and not msg.get("dkim") else "ESMTP"
        relay = f"mail{h[6] % 3 + 1}.{sdom}" if fmt == "plain" else f"out{h[6] % 9 + 1}.mta.{sdom}"
        hops = [
            f"Received: from {relay} ({relay} [{out_ip}])\n\tby mx1.{rdom} (Postfix) with ESMTPS id "
            f"{h[8:13].hex().upper()}\n\tfor <{addr_of(to)}>; {rfc822_date(recv_local)}{utc_note}",
            (
                f"Received: from [{sub_ip}] (unknown [{sub_ip}])"
                if fmt == "plain" and not msg.get("dkim")
                else f"Received: from {app} ({app} [{sub_ip}])"
            )
            + f"\n\tby {relay} (Postfix) with {submit} id "
            f"{h[13:17].hex().upper()};\n\t{rfc822_date(sent_local + timedelta(seconds=1))}{utc_note}",
        ]

    # Body and MIME structure.
    attach = msg.get("attach")
    boundary = f"----=_Part_{int.from_bytes(h[20:24], 'big')}_{h[24:28].hex()}"
    if fmt == "plain":
        ctype, content = None, text_part("text/plain", to_plain(msg.body), charset, cte)
    elif fmt == "html":
        ctype, content = None, text_part("text/html", to_html(msg, subject, charset), charset, cte)
    elif fmt == "alternative":
        ctype, body = multipart(
            "alternative",
            [
                text_part("text/plain", to_plain(msg.body), charset, cte),
                text_part("text/html", to_html(msg, subject, charset), charset, cte),
            ],
            boundary + "_alt",
        )
        content = f"Content-Type: {ctype}\n\n".encode() + body
    else:
        raise ValueError(f"{msg.lang}/{msg.name}: unknown format {fmt!r}")
    if attach:
        ctype, body = multipart("mixed", [content, attachment(attach, msg)], boundary)
        content = f"Content-Type: {ctype}\n\n".encode() + body
    mime_head, _, mime_body = content.partition(b"\n\n")

    headers: list[str] = []
    if msg.get("dkim") == "yes":
        bh = base64.b64encode(hashlib.sha256(mime_body).digest()).decode()
        sig = base64.b64encode(hashlib.shake_256(msg.body.encode()).digest(256)).decode()
        headers.append(
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={sdom}; s=s{h[9] % 3 + 1}; "
            f"t={int(sent.timestamp())};\n\th=from:to:subject:date:message-id:mime-version;\n\tbh={bh};\n\tb="
            + "\n\t ".join(sig[i : i + 70] for i in range(0, len(sig), 70))
        )
    if spam:
        headers.append(
            f"Authentication-Results: mx1.{rdom};\n\tspf=softfail smtp.mailfrom={sdom};\n\tdkim=none;"
            " dmarc=none header.from=" + sdom
        )
    elif msg.get("dkim") == "yes" or h[10] % 2:
        dkim_result = "pass header.d=" + sdom if msg.get("dkim") == "yes" else "none"
        headers.append(
            f"Authentication-Results: mx1.{rdom};\n\tdkim={dkim_result};"
            f"\n\tspf=pass smtp.mailfrom={sdom};\n\tdmarc=pass header.from={sdom}"
        )
    auth = [x for x in headers if x.startswith("Authentication-Results")]
    headers = [*auth, *hops, *[x for x in headers if x not in auth]]
    own: dict[str, str] = {}  # the sender's own headers, ordered below as its mail client would
    own["From"] = f"From: {address(frm, charset, mode)}"
    own["To"] = f"To: {address(to, charset, mode)}"
    if msg.get("cc"):
        own["Cc"] = f"Cc: {address(msg.get('cc'), charset, mode)}"
    if msg.get("reply-to"):
        own["Reply-To"] = f"Reply-To: {address(msg.get('reply-to'), charset, mode)}"
    own["Subject"] = f"Subject: {encoded_words(subject, charset, mode)}"
    own["Date"] = f"Date: {rfc822_date(sent_local)}"
    mid_dom = sdom if not spam or h[11] % 2 else f"{h[12]:x}{h[13]:x}.local"
    own["Message-ID"] = f"Message-ID: <{h[14:22].hex()}.{int(sent.timestamp())}@{mid_dom}>"
    if msg.kind == "reply" or subject.lower().startswith(("re:", "aw:", "回复", "答复", "ответ", "ynt:")):
        prev = digest("prev", msg.body)[:8].hex()
        own["In-Reply-To"] = f"In-Reply-To: <{prev}@{rdom}>"
        own["References"] = f"References: <{digest('first', msg.body)[:8].hex()}@{sdom}>\n <{prev}@{rdom}>"
    if msg.get("list"):
        lname, _, lid = msg.get("list").partition("<")
        own["List-Id"] = (
            f"List-Id: {encoded_words(lname.strip(), charset, mode)} <{lid.strip('> ')}>\n"
            f"List-Unsubscribe: <mailto:unsubscribe@{sdom}?subject=unsubscribe>, <{msg.get('unsub')}>\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\nPrecedence: bulk"
        )
    own["MIME-Version"] = "MIME-Version: 1.0"
    own["Content-Type"] = mime_head.decode()
    order = [
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "List-Id",
        "X-Mailer",
        "Content-Language",
        "MIME-Version",
        "Content-Type",
    ]
    if fmt == "plain" and not msg.get("dkim") and not spam:
        mailer = h[15] % len(MAILERS)
        own["X-Mailer"] = MAILERS[mailer]
        if mailer == 0:  # Thunderbird
            own["Content-Language"] = f"Content-Language: {msg.lang}"
            order = [
                "Message-ID",
                "Date",
                "MIME-Version",
                "X-Mailer",
                "Subject",
                "To",
                "Cc",
                "References",
                "In-Reply-To",
                "From",
                "Reply-To",
                "Content-Language",
                "Content-Type",
            ]
        elif mailer == 1:  # Outlook
            topic = re.sub(r"^[^:]{1,6}:\s*", "", subject)
            own["Thread-Topic"] = f"Thread-Topic: {encoded_words(topic, charset, mode)}"
            own["Thread-Index"] = "Thread-Index: " + base64.b64encode(h[:22]).decode()
            own["Content-Language"] = f"Content-Language: {msg.lang}-{msg.lang.upper()}"
            own["X-MS-Has-Attach"] = "X-MS-Has-Attach: " + ("yes" if attach else "")
            order = [
                "From",
                "To",
                "Cc",
                "Subject",
                "Thread-Topic",
                "Thread-Index",
                "Date",
                "Message-ID",
                "References",
                "In-Reply-To",
                "Content-Language",
                "X-MS-Has-Attach",
                "X-Mailer",
                "Content-Type",
                "MIME-Version",
            ]
        elif mailer in (2, 4):  # Apple Mail, iPhone
            order = [
                "Content-Type",
                "MIME-Version",
                "Subject",
                "From",
                "In-Reply-To",
                "Date",
                "Cc",
                "References",
                "To",
                "Reply-To",
                "Message-ID",
                "X-Mailer",
            ]
    headers += [own[k] for k in order if k in own]
    text = "\n".join(headers) + "\n\n"
    return text.encode("ascii") + mime_body


def all_messages() -> list[Msg]:
    msgs: list[Msg] = []
    for lang in LANGS:
        path = DATA / f"{lang}.txt"
        if path.is_file():
            msgs.extend(read_data(path))
    return msgs


def render() -> dict[str, bytes]:
    """Relative path → bytes of every message."""
    out: dict[str, bytes] = {}
    for m in all_messages():
        rel = f"{m.box}/{m.lang}/{m.name}.eml"
        if rel in out:
            raise ValueError(f"duplicate {rel}")
        try:
            out[rel] = build(m)
        except (UnicodeEncodeError, ValueError) as exc:
            raise SystemExit(f"{rel}: {exc}") from exc
    return out


def table(files: dict[str, bytes]) -> str:
    """Markdown table: language, script, charsets, ham/spam counts, kinds."""
    rows = ["| language | script | charsets | ham | spam | kinds |", "|---|---|---|---:|---:|---|"]
    msgs = all_messages()
    for lang, (name, script, _) in LANGS.items():
        ms = [m for m in msgs if m.lang == lang]
        if not ms:
            continue
        cs = sorted({m.get("charset", "utf-8").lower() for m in ms})
        ham = [m for m in ms if m.box == "ham"]
        spam = [m for m in ms if m.box == "spam"]
        kinds = ", ".join(dict.fromkeys(m.kind for m in ham)) + (
            "; spam: " + ", ".join(dict.fromkeys(m.kind for m in spam)) if spam else ""
        )
        rows.append(
            f"| {name} (`{lang}`) | {script} | {', '.join(cs)} | {len(ham)} | {len(spam)} | {kinds} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if any file would change")
    ap.add_argument("--table", action="store_true", help="print the README table")
    args = ap.parse_args(argv)
    files = render()
    if args.table:
        print(table(files))
        return 0
    old = {}
    if SUMS.is_file():
        for line in SUMS.read_text().splitlines():
            sha, _, rel = line.partition("  ")
            old[rel] = sha
    changed = [
        rel for rel, data in files.items() if rel in old and hashlib.sha256(data).hexdigest() != old[rel]
    ]
    missing = [rel for rel in old if rel not in files]
    if changed or missing:
        for rel in changed:
            print(f"EDITED (not allowed, add a new message instead): {rel}", file=sys.stderr)
        for rel in missing:
            print(f"REMOVED (not allowed): {rel}", file=sys.stderr)
        return 1
    if args.check:
        stale = [
            rel
            for rel, data in files.items()
            if not (HERE / rel).is_file() or (HERE / rel).read_bytes() != data
        ]
        for rel in stale:
            print(f"not written yet: {rel}", file=sys.stderr)
        return 1 if stale else 0
    for rel, data in files.items():
        p = HERE / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_file() or p.read_bytes() != data:
            p.write_bytes(data)
    SUMS.write_text("".join(f"{hashlib.sha256(files[rel]).hexdigest()}  {rel}\n" for rel in sorted(files)))
    print(f"{len(files)} messages ({sum(r.startswith('ham/') for r in files)} ham) under {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
