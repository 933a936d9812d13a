"""Fuzzing parse + features (issue 13): any bytes give a view and a row, in bounded time.

``parse_message`` catches every exception (a best-effort view for any input), so "never raises"
could not fail. These assert instead that the inner parser did not raise (no ``parse_error:`` in
``view.cut``), that features and scoring raise nothing, and that each input finishes in under 2 s.
Inputs are header-, MIME- and HTML-shaped messages drawn from the characters that matter to the
parser, the same grown by repeating a slice of them, and raw bytes. Bounded for CI (200 examples
each, derandomized so a run is repeatable); ``bench/fuzz.py`` is the long, mutation-based run.
"""

from __future__ import annotations

import time
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spamgate.model.artifact import load_artifact
from spamgate.model.bundled import bundled_model_path
from spamgate.model.parse import parse_message
from spamgate.model.scoring import Scorer

BOUND_S = 2.0
FUZZ = settings(
    max_examples=200,
    deadline=2000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HEADER_NAMES = [
    "From", "To", "Cc", "Reply-To", "Subject", "Received", "Message-ID", "Date", "Content-Type",
    "Content-Transfer-Encoding", "Content-Disposition", "X-Mailer", "Return-Path", "X-Spam-Status",
]  # fmt: skip
VALUE_ATOMS = [
    "a", "b@c.example", "<", ">", "@", '"', "\\", " ", "\t", "\n ", "\n\t", "=?", "?=", "=?utf-8?b?",
    "=?iso-8859-1?q?", "?", "=41", "YWJj", ";", "=", " boundary=b", " charset=", " name*0*=", "%41",
    "(", ")", "[1.2.3.4]", "from ", " by ", "http://x.example/", "é", "\x00", "::", "&#", "\r",
    "multipart/mixed", "text/html", "message/rfc822", "base64", "quoted-printable", "punycode",
]  # fmt: skip
HTML_ATOMS = [
    "<a href=http://x.example/>", "</a>", "<p>", "</p>", "<div style='display:none'>", "</div>",
    "<font color=white size=0>", "<script>", "</script>", "<!--", "-->", "<![CDATA[", "]]>", "<!",
    "<?", "<", ">", "&amp;", "&#65;", "&#", "&notin", "&", "<br>", "<img src=x>", "a1.a1.", " ",
    "\n", "'", '"', "=", "<a", "<style>", "</style>",
]  # fmt: skip
BODY_LINES = ["--b", "--b--", "--bb", "--b ", "", "x", "Content-Type: text/html", "QUJD", "=\n", "=ZZ"]

value = st.lists(st.sampled_from(VALUE_ATOMS) | st.text(max_size=6), max_size=30).map("".join)
header_name = st.sampled_from(HEADER_NAMES) | st.from_regex(r"[!-9;-~]{1,12}", fullmatch=True)
headers = st.lists(st.tuples(header_name, value), max_size=10)
html_doc = st.lists(st.sampled_from(HTML_ATOMS) | st.text(max_size=6), max_size=60).map("".join)
line_end = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def entity(draw: st.DrawFn, depth: int = 0) -> str:
    """Content headers and body of one MIME entity (multiparts nest up to three deep)."""
    head = "\n".join(f"{k}:{v}" for k, v in draw(headers))
    kinds = ["text", "html", "lines"] + (["multipart", "rfc822"] if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "html":
        return f"Content-Type: text/html\n{head}\n\n{draw(html_doc)}"
    if kind == "lines":
        return f"{head}\n\n" + "\n".join(draw(st.lists(st.sampled_from(BODY_LINES) | value, max_size=30)))
    if kind == "rfc822":
        return f"Content-Type: message/rfc822\n{head}\n\n{draw(entity(depth + 1))}"
    if kind == "multipart":
        boundary = draw(st.sampled_from(["b", "bb", "b--", "=_x"]) | st.text(min_size=1, max_size=8))
        parts = draw(st.lists(entity(depth + 1), max_size=4))
        body = "".join(f"--{boundary}\n{p}\n" for p in parts) + draw(
            st.sampled_from([f"--{boundary}--\n", ""])
        )
        return f'Content-Type: multipart/mixed; boundary="{boundary}"\n{head}\n\n{body}'
    return f"{head}\n\n{draw(value)}"


@st.composite
def message(draw: st.DrawFn) -> bytes:
    text = draw(entity()).replace("\n", draw(line_end))
    return text.encode(draw(st.sampled_from(["utf-8", "latin-1"])), "replace")


@lru_cache(maxsize=1)
def _scorer() -> Scorer:
    return Scorer(load_artifact(bundled_model_path()))


def check(raw: bytes) -> None:
    """The inner parser raises nothing, features and scoring raise nothing, all within the bound."""
    scorer = _scorer()
    t = time.perf_counter()
    view = parse_message(raw, scorer.extractor.config.limits)
    assert not [c for c in view.cut if c.startswith("parse_error:")], view.cut
    scorer.extractor.transform_one(view)
    scorer.score(raw)
    assert time.perf_counter() - t < BOUND_S


@FUZZ
@given(message())
def test_structured_messages(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(message(), st.integers(0, 4000), st.integers(1, 64), st.integers(10, 4000))
def test_grown_by_repetition(raw: bytes, at: int, width: int, times: int) -> None:
    at = min(at, len(raw))
    piece = raw[at : at + width] or b"<"
    check(raw[:at] + piece * min(times, 131072 // len(piece)) + raw[at:])


@FUZZ
@given(st.binary(max_size=8192))
def test_raw_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.lists(st.tuples(header_name, value), max_size=40), html_doc)
def test_headers_and_html(hdrs: list[tuple[str, str]], doc: str) -> None:
    raw = "\n".join(f"{k}: {v}" for k, v in hdrs) + "\nContent-Type: text/html\n\n" + doc
    check(raw.encode("utf-8", "surrogateescape"))
