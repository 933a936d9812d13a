"""The MIME splitter: what it must agree with ``email`` on, and where it is deliberately more forgiving."""

from __future__ import annotations

import base64
import email
from email.policy import compat32

import pytest

from spamgate.model.limits import ParseLimits
from spamgate.model.mime import content_type, decode_transfer, parse_params, split_headers, split_message
from spamgate.model.parse import parse_message
from tests.mail import HAM_TEXTS, SPAM_TEXTS, attachment, html, make, multipart

LIMITS = ParseLimits()


def _leaves_by_email(raw: bytes) -> list[tuple[str, bytes]]:
    msg = email.message_from_bytes(raw, policy=compat32)
    out = []
    for part in msg.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            assert isinstance(payload, bytes)
            out.append((part.get_content_type(), payload.replace(b"\r\n", b"\n")))  # we normalise line ends
    return out


def _leaves(raw: bytes) -> list[tuple[str, bytes]]:
    return [(p.ctype, p.decoded_body()[0]) for p in split_message(raw, LIMITS).parts if not p.children]


@pytest.mark.parametrize(
    "raw",
    [
        make(),
        html("<p>Hello <b>there</b></p>"),
        attachment("report.pdf", b"%PDF-1.4 fake pdf", "application/pdf"),
        multipart(
            [("text/plain", "", HAM_TEXTS[0]), ("text/html", "", f"<p>{SPAM_TEXTS[0]}</p>")],
            {},
            "alternative",
        ),
        multipart(
            [
                (
                    "text/plain; charset=iso-8859-1",
                    "Content-Transfer-Encoding: quoted-printable\n",
                    "caf=E9 =\nsoft",
                ),
                (
                    "image/gif",
                    "Content-Transfer-Encoding: base64\n",
                    base64.b64encode(b"GIF89a....").decode(),
                ),
            ]
        ),
    ],
)
def test_agrees_with_the_stdlib_on_well_formed_mail(raw: bytes) -> None:
    assert _leaves(raw) == _leaves_by_email(raw)
    ours = split_message(raw, LIMITS).headers
    theirs = email.message_from_bytes(raw, policy=compat32).raw_items()
    assert [(k, " ".join(v.split())) for k, v in theirs] == [(k, " ".join(v.split())) for k, v in ours]


def test_boundary_that_prefixes_a_nested_boundary() -> None:
    # Mailers nest "----=_Part_x" inside "----=_Part_xAA": a line that starts with the outer
    # delimiter is not a delimiter.
    inner = "--=_P_1AA\nContent-Type: text/plain\n\ninner text\n--=_P_1AA--\n"
    body = (
        '--=_P_1\nContent-Type: multipart/alternative; boundary="=_P_1AA"\n\n'
        f"{inner}\n--=_P_1\nContent-Type: text/html\n\n<p>second</p>\n--=_P_1--\n"
    )
    raw = make({"Content-Type": 'multipart/related; boundary="=_P_1"'}, body=body)
    tree = split_message(raw, LIMITS)
    assert [p.ctype for p in tree.parts] == [
        "multipart/related",
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert tree.defects == 0
    assert "inner text" in parse_message(raw).text


def test_crlf_and_lf_give_the_same_parts() -> None:
    raw = multipart([("text/plain", "", "one"), ("text/plain", "", "two")])
    assert b"\r\n" in raw
    assert _leaves(raw) == _leaves(raw.replace(b"\r\n", b"\n"))


def test_faults_are_counted_not_fatal() -> None:
    no_close = make(
        {"Content-Type": "multipart/mixed; boundary=b"}, body="--b\nContent-Type: text/plain\n\nhi\n"
    )
    tree = split_message(no_close, LIMITS)
    assert tree.defects == 1 and _leaves(no_close) == [("text/plain", b"hi\n")]
    no_boundary = make({"Content-Type": "multipart/mixed"}, body="text where parts should be")
    tree = split_message(no_boundary, LIMITS)
    assert tree.defects == 1 and "text where parts should be" in parse_message(no_boundary).text
    absent = make({"Content-Type": "multipart/mixed; boundary=zz"}, body="no delimiter at all")
    assert "no delimiter at all" in parse_message(absent).text


def test_header_block_ends_at_a_non_header_line() -> None:
    headers, body, defects = split_headers(b"Subject: hi\nthis is text, not a header\nmore\n")
    assert headers == [("Subject", "hi")] and body.startswith(b"this is text") and defects == 1
    headers, body, defects = split_headers(
        b"From someone@example.org Mon Jan 1 00:00:00 2007\nSubject: x\n\nb"
    )
    assert headers == [("Subject", "x")] and body == b"b" and defects == 0
    headers, _, _ = split_headers(b"Subject: folded\n  over\tlines\nTo: a@b\n\n")
    assert headers == [("Subject", "folded over\tlines"), ("To", "a@b")]
    headers, _, _ = split_headers("Subject: Grüße\n\n".encode() + b"X-Latin: \xe9t\xe9\n\n")
    assert headers[0] == ("Subject", "Grüße")


@pytest.mark.parametrize(
    "text",
    [
        "Note: the meeting moved to Thursday.\nSee you there.\n\nBob\n",
        "https://example.org/r/abc is the link you asked for\n",
        "Konu: Toplantı\n\nMerhaba Ayşe, yarın saat 10:00'da.\n",
        "Hello:\nthis is text\n",
    ],
)
def test_text_whose_first_line_looks_like_a_header_is_text(text: str) -> None:
    """A top-level block with no field mail carries (model.mime.is_mail_field) is text handed over
    alone: it keeps its first line and has no header block."""
    view = parse_message(text.encode())
    assert view.headers == [] and not view.has_header_block and view.text == text
    assert split_message(text.encode(), LIMITS).defects == 0


def test_one_mail_field_makes_a_header_block() -> None:
    for raw in (
        b"Subject: hi\n\nbody\n",
        b"X-Anything: 1\nFoo: bar\n\nbody\n",
        b"Foo: bar\nTo: a@b\n\nbody\n",
    ):
        view = parse_message(raw)
        assert view.headers and view.has_header_block and view.text == "body\n"


def test_params_quoting_and_rfc2231() -> None:
    assert content_type('Text/HTML; Charset="UTF-8"; x=1', "text/plain") == (
        "text/html",
        {"charset": "UTF-8", "x": "1"},
    )
    assert content_type("", "message/rfc822")[0] == "message/rfc822"
    assert content_type("garbage", "text/plain")[0] == "text/plain"
    assert parse_params("attachment; filename*=utf-8''%C3%BCber.pdf")["filename"] == "über.pdf"
    assert parse_params('attachment; filename*0="long"; filename*1="name.exe"')["filename"] == "longname.exe"
    assert parse_params(r'inline; filename="a\"b.txt"')["filename"] == 'a"b.txt'


def test_transfer_decoding_is_tolerant() -> None:
    assert decode_transfer(b"aGVsbG8=\n", "base64") == (b"hello", False)
    assert decode_transfer(b"aGVs!!bG8=", "base64")[0] == b"hello"  # junk characters skipped
    data, failed = decode_transfer(b"aGVsbG8gd29y", "base64")
    assert data == b"hello wor" and not failed
    data, failed = decode_transfer(b"aGVsbG8gd29yb", "base64")  # a truncated quantum
    assert data.startswith(b"hello wor") and failed
    assert decode_transfer(b"caf=C3=A9=\nau lait", "quoted-printable")[0] == "café".encode() + b"au lait"
    assert decode_transfer(b"as is", "8bit") == (b"as is", False)


def test_message_rfc822_is_walked() -> None:
    inner = make({"Subject": "inner"}, body="forwarded words").decode()
    raw = multipart([("text/plain", "", "see below"), ("message/rfc822", "", inner)])
    tree = split_message(raw, LIMITS)
    assert [p.ctype for p in tree.parts] == ["multipart/mixed", "text/plain", "message/rfc822", "text/plain"]
    assert "forwarded words" in parse_message(raw).text


def test_addresses_without_the_stdlib() -> None:
    v = parse_message(
        make({"From": '"Smith, Jane \\(HQ\\)" <jane@example.org>', "Reply-To": "x@y.example (X)"})
    )
    assert v.from_addr is not None and v.from_addr.display == "Smith, Jane (HQ)"
    assert v.from_addr.domain == "example.org"
    assert v.reply_to is not None and v.reply_to.address == "x@y.example" and v.reply_to.display == "X"
    v = parse_message(make({"To": '"a@b.example" <c@d.example>, e@f.example, "G" <g@h.example>'}))
    assert v.to_count == 3
