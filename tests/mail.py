"""Hand-written test messages (no corpus mail is ever copied into the repository)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

BASE_HEADERS: dict[str, str] = {
    "Received": (
        "from mail.example.org (mail.example.org [93.184.216.34]) by mx.example.net "
        "(Postfix) with ESMTP id 4F2A1; Tue, 03 Jun 2025 10:00:05 +0000"
    ),
    "Message-ID": "<20250603100000.1234@example.org>",
    "Date": "Tue, 03 Jun 2025 10:00:00 +0000",
    "From": "Alice Example <alice@example.org>",
    "To": "Bob <bob@example.net>",
    "Subject": "Minutes of the planning meeting",
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=utf-8",
}

BASE_BODY = (
    "Hi Bob,\n\nhere are the minutes from today's planning meeting. We agreed to move the\n"
    "release to next Thursday and to review the open tickets on Monday.\n\nCheers,\nAlice\n"
)


def make(
    headers: Mapping[str, str | None] | None = None,
    body: str = BASE_BODY,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    """A message from BASE_HEADERS with overrides (None removes a header)."""
    h: dict[str, str | None] = dict(BASE_HEADERS)
    h.update(headers or {})
    lines = [f"{k}: {v}" for k, v in h.items() if v is not None]
    lines += [f"{k}: {v}" for k, v in (extra or [])]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


def multipart(
    parts: list[tuple[str, str, str]], headers: Mapping[str, str | None] | None = None, subtype: str = "mixed"
) -> bytes:
    """A multipart message; each part is (content-type line, extra headers, body)."""
    boundary = "=_b0undary_42"
    body = ["This is a multi-part message in MIME format."]
    for ctype, extra, content in parts:
        body.append(f"--{boundary}\nContent-Type: {ctype}\n{extra}\n{content}")
    body.append(f"--{boundary}--\n")
    h: dict[str, str | None] = {"Content-Type": f'multipart/{subtype}; boundary="{boundary}"'}
    h.update(headers or {})
    return make(h, "\n".join(body))


def html(doc: str, headers: Mapping[str, str | None] | None = None) -> bytes:
    """An HTML-only message."""
    h: dict[str, str | None] = {"Content-Type": "text/html; charset=utf-8"}
    h.update(headers or {})
    return make(h, doc)


def attachment(filename: str, payload: bytes, ctype: str = "application/octet-stream") -> bytes:
    """A text message with one base64 attachment."""
    b64 = base64.encodebytes(payload).decode()
    return multipart(
        [
            ("text/plain; charset=utf-8", "", BASE_BODY),
            (
                f'{ctype}; name="{filename}"',
                "Content-Transfer-Encoding: base64\n"
                f'Content-Disposition: attachment; filename="{filename}"\n',
                b64,
            ),
        ]
    )


HAM_TEXTS = [
    "Meeting notes attached, the budget review moved to Thursday afternoon.",
    "Can you review my patch for the parser? The unit tests pass locally.",
    "Lunch on Friday with the team, the usual place near the office.",
    "The quarterly report draft is in the shared folder, comments welcome.",
    "Kernel build failed on arm64, looks like a missing header in the driver.",
    "Thanks for the photos from the hiking trip, the lake looked great.",
]
SPAM_TEXTS = [
    "CHEAP meds online!!! Buy viagra now, 80% discount, click http://pills.example.biz/buy",
    "You have WON $1,000,000 in our lottery. Send your bank details to claim the prize now!",
    "Lose weight fast with our miracle pill, order today at http://slim.example.info/",
    "Make money from home, earn $5000 a week, no experience, visit http://cash.example.ru/",
    "Hot singles in your area want to meet you tonight, click http://date.example.top/",
    "Replica watches, rolex at 90% off, limited offer http://watches.example.cn/",
]


def generated_corpus(n: int = 60, seed: int = 0) -> list[tuple[str, bytes]]:
    """A small labelled corpus of generated messages: (label, raw)."""
    import random

    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        spam = i % 2 == 1
        text = rng.choice(SPAM_TEXTS if spam else HAM_TEXTS)
        words = " ".join(rng.choice(text.split()) for _ in range(12))
        day = 1 + i % 27
        headers: dict[str, str | None] = {
            "Subject": ("URGENT offer " if spam else "Re: ") + " ".join(text.split()[:4]),
            "Message-ID": f"<gen{i}.{seed}@{'bulk.example.biz' if spam else 'example.org'}>",
            "Date": f"Tue, {day:02d} Jun 2025 10:00:00 +0000",
            "From": "Deals <deals@bulk.example.biz>" if spam else "Alice <alice@example.org>",
        }
        out.append(("spam" if spam else "ham", make(headers, text + "\n" + words + "\n")))
    return out
