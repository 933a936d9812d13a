"""A message as its text alone, the way some evaluation sets hold mail ("body text only").

Issue 14's Turkish day-0 set came that way, and so may any set a new site tries spamgate on. Such
input has no header block, and the model's thresholds, measured on mail with headers, do not hold
on it: trec07p as a left-out site, given as text only, had 6.2% of its ham at or above the FPR-1%
point measured on its whole messages (scratch run, ``/work/scratch/hs/body_points.py``). So the
bundled recipe also measures new-site points on this form of each left-out site's mail
(``training.new_site``), and ``bench/multilingual.py --form body`` scores the hand-written set in it.

The text is the first text part that is not an attachment, plain before HTML (an HTML mail's text
is its HTML source), transfer encoding undone, decoded with its declared charset
(``model.charsets``) and written as UTF-8; no header, no blank first line. A message with no such
part gives empty text.
"""

from __future__ import annotations

from spamgate.model.charsets import decode_bytes
from spamgate.model.limits import ParseLimits
from spamgate.model.mime import Part, split_message

_LIMITS = ParseLimits()

__all__ = ["text_only"]


def _first_text_part(parts: list[Part]) -> Part | None:
    html: Part | None = None
    for part in parts:
        if part.children or part.ctype not in ("text/plain", "text/html"):
            continue
        if part.filename() or "attachment" in part.header("Content-Disposition").lower():
            continue
        if part.ctype == "text/plain":
            return part
        html = html or part
    return html


def text_only(raw: bytes, limits: ParseLimits = _LIMITS) -> bytes:
    """The message's text as UTF-8 bytes with no header (see the module docstring)."""
    part = _first_text_part(split_message(raw[: limits.max_bytes], limits).parts)
    if part is None:
        return b""
    payload, _ = part.decoded_body()
    # The charset as model.parse reads it (stripped, lower case), so the text is the text scored.
    charset = part.params.get("charset", "").strip().lower() or None
    return decode_bytes(payload, charset).encode("utf-8", "replace")
