"""HTML to visible text, keeping the signals that only exist in HTML.

Spam hides text (``display:none``, white-on-white, 1px fonts) to poison
word-based filters, and puts one host in the link text and another in the
``href``. A plain tag stripper loses both; this converter tracks, per open
element, whether its content is visible, and records anchors as
(text, href) pairs.

It is a single regular-expression scan rather than ``html.parser``: on the
first 2,000 trec07p messages ``html.parser`` took 9 ms per HTML message
(70% of all parse time); the regex scan takes well under 1 ms and is just as
tolerant of broken markup, since it never builds a tree.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"<!--.*?(?:-->|$)|<!\[CDATA\[.*?(?:\]\]>|$)|<![^>]*>?|<\?[^>]*>?|"
    r"<(/?)([a-zA-Z][a-zA-Z0-9:-]*)([^>]*)>|<[^>]*>|([^<]+)|<",
    re.DOTALL,
)
_ATTR = re.compile(r"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](?:\.\d+)?(?:px|pt)?\s*(?:;|$)"
    r"|(?<![-\w])color\s*:\s*(?:#fff(?:fff)?\b|white\b|rgb\(\s*255\s*,\s*255\s*,\s*255\s*\))",
    re.IGNORECASE,
)
_HIDE_HINT = re.compile(r"style|hidden", re.IGNORECASE)
_WS = re.compile(r"[ \t\r\f\v\xa0]+")
_BLANKS = re.compile(r"\n\s*\n+")
_WHITE = {"#fff", "#ffffff", "white"}
_BLOCK_TAGS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "td"}
_SKIP_CONTENT = {"script", "style", "head", "title", "noscript"}
_VOID = {"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "wbr", "source"}
_MAX_STACK = 512


@dataclass
class HtmlExtract:
    """What one HTML document contributes to the message view."""

    visible_text: str = ""
    hidden_chars: int = 0
    links: list[tuple[str, str]] = field(default_factory=list)
    image_count: int = 0
    has_script: bool = False
    has_form: bool = False


def _attrs(s: str) -> dict[str, str]:
    return {name.lower(): (dq or sq or bare) for name, dq, sq, bare in _ATTR.findall(s)}


def html_to_text(doc: str, max_links: int = 200) -> HtmlExtract:
    """Convert HTML to visible text; never raises on malformed markup."""
    out: list[str] = []
    ext = HtmlExtract()
    stack: list[tuple[str, bool]] = []  # (tag, hidden) of open elements
    skip_tag = ""  # inside <script>/<style>…: content is not text
    anchor: tuple[str, list[str]] | None = None
    # findall's tuples instead of finditer's match objects: a third of this function's time
    # went to Match.group calls (~300 a message).
    for slash, tag, raw_attrs, piece in _TOKEN.findall(doc):
        if not tag:
            if skip_tag or not piece:
                continue  # inside <script>/<style>, or a comment/doctype/stray "<"
            data = html.unescape(piece) if "&" in piece else piece
            if stack and stack[-1][1]:
                ext.hidden_chars += len(data.strip())
                continue
            out.append(data)
            if anchor is not None:
                anchor[1].append(data)
            continue
        tag = tag.lower()
        closing = slash == "/"
        if skip_tag:
            if closing and tag == skip_tag:
                skip_tag = ""
            continue
        if closing:
            if tag == "a" and anchor is not None:
                if len(ext.links) < max_links:
                    ext.links.append(("".join(anchor[1]).strip(), anchor[0].strip()))
                anchor = None
            if tag in _BLOCK_TAGS:
                out.append("\n")
            for i in range(len(stack) - 1, max(-1, len(stack) - 16), -1):
                if stack[i][0] == tag:
                    del stack[i:]
                    break
            continue
        if tag in _SKIP_CONTENT:
            if tag == "script":
                ext.has_script = True
            if not raw_attrs.rstrip().endswith("/"):
                skip_tag = tag
            continue
        if tag in _BLOCK_TAGS:
            out.append("\n")
        if tag == "form":
            ext.has_form = True
        elif tag == "img":
            ext.image_count += 1
        if tag == "a":
            a = _attrs(raw_attrs)
            if "href" in a:
                anchor = (html.unescape(a["href"]), [])
        if tag in _VOID:
            continue
        hidden = bool(stack) and stack[-1][1]
        # Only style, hidden and <font> attributes can hide text: skip the attribute parse
        # (a regex scan and a dict per tag) for every other tag.
        if not hidden and (tag == "font" or _HIDE_HINT.search(raw_attrs)):
            a = _attrs(raw_attrs)
            style = a.get("style", "")
            if (
                (style and _HIDDEN_STYLE.search(style))
                or "hidden" in a
                or (tag == "font" and a.get("color", "").strip().lower() in _WHITE)
                or (tag == "font" and a.get("size", "").strip() in {"0", "-5", "-4"})
            ):
                hidden = True
        if len(stack) < _MAX_STACK:
            stack.append((tag, hidden))
    if anchor is not None and len(ext.links) < max_links:
        ext.links.append(("".join(anchor[1]).strip(), anchor[0].strip()))
    text = _WS.sub(" ", "".join(out))
    ext.visible_text = _BLANKS.sub("\n", text).strip()
    return ext
