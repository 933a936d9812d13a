"""The parser returns a view for any input, within its limits, and decodes what it can."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from spamgate.model.html_text import html_to_text
from spamgate.model.limits import ParseLimits
from spamgate.model.message import MessageView
from spamgate.model.parse import parse_message
from tests.mail import attachment, html, make, multipart


def parsed(raw: bytes) -> MessageView:
    """``parse_message(raw)``, failing the test when the parser raised.

    ``parse_message`` never raises: when the inner parser does, it records
    ``parse_error:<exception>`` in ``view.cut`` and returns the raw bytes as the text, so a
    test that only called it (or only checked the types of the view's fields) could not fail.
    """
    view = parse_message(raw)
    assert not [c for c in view.cut if c.startswith("parse_error:")], view.cut
    return view


def test_plain_message_fields() -> None:
    v = parse_message(make())
    assert v.subject == "Minutes of the planning meeting"
    assert v.from_addr is not None and v.from_addr.domain == "example.org"
    assert v.message_id == "<20250603100000.1234@example.org>"
    assert v.date is not None and v.date.year == 2025
    assert v.received[0].ip == "93.184.216.34" and v.received[0].helo == "mail.example.org"
    assert v.received[0].rdns == "mail.example.org" and v.received[0].by == "mx.example.net"
    assert "planning meeting" in v.text
    assert v.cut == []


def test_rfc2047_subject_and_charsets() -> None:
    raw = make(
        {
            "Subject": "=?utf-8?B?w5xiZXJ3ZWlzdW5nIGVyaGFsdGVu?=",
            "Content-Type": "text/plain; charset=iso-8859-1",
        },
        body="",
    )
    raw += "Grüße aus Köln".encode("latin-1")
    v = parse_message(raw)
    assert v.subject == "Überweisung erhalten"
    assert "Grüße aus Köln" in v.text


def test_bad_charset_falls_back() -> None:
    raw = (
        make(
            {"Content-Type": "text/plain; charset=x-no-such-charset", "Subject": "=?x-unknown?Q?caf=E9?="},
            body="",
        )
        + "café".encode()
    )
    v = parse_message(raw)
    assert "café" in v.text
    assert v.subject  # decoded best-effort, not dropped


def test_raw_8bit_header() -> None:
    raw = make(body="x").replace(b"Subject: Minutes", "Subject: Ñandú".encode() + b" Minutes")
    assert "Ñandú" in parse_message(raw).subject


def test_cjk_text_is_kept() -> None:
    raw = make({"Subject": "=?utf-8?B?5Lya6K6u6K6w5b2V?="}, body="今天的会议记录在附件里。")
    v = parse_message(raw)
    assert v.subject == "会议记录" and "会议记录" in v.text


def test_html_visible_text_hidden_text_and_links() -> None:
    v = parse_message(
        html(
            '<p>Hello &amp; welcome</p><span style="display: none">secret words</span>'
            '<a href="http://evil.example.ru/x">www.bank.example.com</a><script>var a=1;</script>'
        )
    )
    assert "Hello & welcome" in v.html_text
    assert "secret" not in v.html_text and v.hidden_text_chars == len("secret words")
    assert v.links[0].text == "www.bank.example.com" and v.links[0].href == "http://evil.example.ru/x"
    assert "var a" not in v.html_text and v.html_has_script
    assert "http://evil.example.ru/x" in v.urls


def test_html_converter_on_broken_markup() -> None:
    for doc in ["<p><b>unclosed", "<<<>>>", "<a href='x", "<!-- never closed", "<div " * 1000, "</p>" * 50]:
        html_to_text(doc)


def test_attachment_is_sniffed() -> None:
    v = parse_message(attachment("holiday.jpg", b"MZ\x90\x00" * 8, "image/jpeg"))
    (att,) = v.attachments
    assert att.filename == "holiday.jpg" and att.declared_type == "image/jpeg"
    assert att.sniffed_type == "application/x-msdownload" and att.size == 32


def test_missing_headers() -> None:
    v = parse_message(b"\r\n\r\njust a body\r\n")
    assert v.subject == "" and v.from_addr is None and v.message_id is None and v.date is None
    assert "just a body" in v.text


def test_truncated_mime() -> None:
    raw = multipart([("text/plain", "", "first part"), ("text/html", "", "<p>second")])
    v = parse_message(raw[: len(raw) - 40])
    assert "first part" in v.text


def test_binary_junk() -> None:
    junk = bytes(range(256)) * 200
    v = parsed(junk)
    assert v.headers == [] and v.subject == "" and len(v.text) == len(junk)
    v = parsed(b"\x00\xff" * 5000 + b"\r\n\r\n" + junk)
    assert v.subject == "" and v.from_addr is None


def test_ten_megabyte_body_is_cut_and_fast() -> None:
    raw = make(body="word " * (2 * 1024 * 1024))
    assert len(raw) > 10 * 1024 * 1024
    t = time.perf_counter()
    v = parse_message(raw)
    assert time.perf_counter() - t < 5.0
    assert any(c.startswith("bytes>") for c in v.cut)
    assert v.raw_size == len(raw)


def test_nested_multipart_100_deep() -> None:
    body = "innermost text"
    ctype = "text/plain"
    for depth in range(100):
        b = f"b{depth}"
        body = f"--{b}\nContent-Type: {ctype}\n\n{body}\n--{b}--\n"
        ctype = f'multipart/mixed; boundary="{b}"'
    raw = make({"Content-Type": ctype}, body=body)
    v = parse_message(raw)
    assert any(c.startswith("mime_depth>") for c in v.cut)
    v2 = parse_message(raw, ParseLimits(max_mime_depth=200, max_parts=500))
    assert "innermost text" in v2.text


def test_part_count_limit() -> None:
    raw = multipart([("text/plain", "", f"part {i}") for i in range(300)])
    v = parse_message(raw, ParseLimits(max_parts=50))
    assert "parts>50" in v.cut


def test_header_flood_is_cut() -> None:
    raw = make(extra=[(f"X-Junk-{i}", "y" * 100) for i in range(2000)])
    v = parse_message(raw, ParseLimits(max_header_bytes=16 * 1024))
    assert any(c.startswith("header_bytes>") for c in v.cut)
    assert "planning meeting" in v.text


def test_limits_are_validated() -> None:
    import pytest

    with pytest.raises(ValueError, match="max_parts"):
        ParseLimits(max_parts=0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(data: bytes) -> None:
    parsed(data)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"Content-Type: multipart/mixed; boundary=x\r\n",
                b"--x\r\n",
                b"--x--\r\n",
                b"Subject: =?utf-8?B?///?=\r\n",
                b"\r\n",
                b"<html><a href=",
                b"=?",
                b"Received: from [",
                b"Content-Transfer-Encoding: base64\r\n",
                b"QUJD\r\n",
                b"\xff\xfe",
            ]
        ),
        max_size=60,
    )
)
def test_structured_junk_never_raises(chunks: list[bytes]) -> None:
    parsed(b"".join(chunks))


def test_urls_at_word_boundaries_only() -> None:
    from spamgate.model.urls import find_urls

    text = "see WWW.Example.com/a, xhttp://no.example and Ghttp://a.example/*http://b.example/c."
    assert find_urls(text, 10) == ["WWW.Example.com/a", "http://b.example/c"]
    assert find_urls("http://a.example http://b.example", 1) == ["http://a.example"]


# The header block ends at the first empty line however its line ends are mixed; every part of the
# parse must agree on where (model.parse._header_block_end against model.mime's reading).
_MIXED_HEAD = b"From: Ana <ana@example.org>\nSubject: Lista de precios\nX-Spam-Status: No, score=-9\n"


def test_mixed_line_end_blank_line_ends_the_header_block() -> None:
    body = b"X-Spam-Flag: YES is what the old gateway wrote, see below.\n" + b"precio 12 EUR\n" * 2000
    view = parse_message(_MIXED_HEAD + b"\r\n" + body, ParseLimits(max_header_bytes=1024))
    assert view.header("Subject") == "Lista de precios"
    assert view.header("X-Spam-Status") is None  # the header's verdict line is removed
    assert "X-Spam-Flag: YES is what the old gateway wrote" in view.text  # the body's line is not
    assert not any(c.startswith("header_bytes>") for c in view.cut)  # the body is not header


def test_empty_header_block_keeps_the_body_whole() -> None:
    for start in (b"\n", b"\r\n"):
        view = parse_message(start + b"X-Spam-Status: No\nHola, nos vemos el lunes.\n\nAna\n")
        assert view.headers == []
        assert "X-Spam-Status: No" in view.text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=2, max_size=2), st.binary(max_size=300))
def test_every_line_end_mix_agrees_on_the_boundary(ends: list[bytes], body: bytes) -> None:
    raw = b"Subject: agenda\nX-Spam-Level: ***" + ends[0] + ends[1] + b"X-Spam-Level: body\n" + body
    view = parse_message(raw)
    assert view.header("X-Spam-Level") is None
    assert view.text.startswith("X-Spam-Level: body")
