"""``rewrite_message`` (the pipe filter's output): headers go into the header block and nowhere else.

An attack review (F6) found headers written into the body or glued to a header: a line-ending guess
from the first 2 KB (LF headers, CRLF body) put ``Subject: [SPAM]`` between two body paragraphs or
tagged a quoted ``Subject:`` line in the body; a last header with no line end became
``To: b@example.orgSubject: [SPAM]``; a message starting with a blank line got the Subject at the end
of its body; ``Subject : x`` was not seen, so a second, tagged Subject was added and readers showed the
untagged one. The property test pins the contract: the output is the original bytes with exactly the
added header lines in front and the tag (or one Subject line) in the header block.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spamgate.service.mta.plan import Plan, header_line_end, rewrite_message

TAG = Plan("TAG", (("X-Spam-Flag", "YES"), ("X-Spam-Status", "Yes, p=0.9")), "[SPAM] ", "", "", "", "")
ADDED = b"X-Spam-Flag: YES{le}X-Spam-Status: Yes, p=0.9{le}"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def added(le: bytes) -> bytes:
    return ADDED.replace(b"{le}", le)


def test_lf_headers_with_a_crlf_body() -> None:
    raw = b"From: a\nTo: b\n\n" + GTUBE + b"\r\n\r\nsecond paragraph\r\n"
    assert rewrite_message(raw, TAG) == added(b"\n") + b"From: a\nTo: b\nSubject: [SPAM]\n\n" + raw[15:]
    # no CRLFCRLF anywhere: the tag went on the last body line
    raw = b"From: a\nTo: b\n\nbody line\r\n"
    assert rewrite_message(raw, TAG) == added(b"\n") + b"From: a\nTo: b\nSubject: [SPAM]\n\nbody line\r\n"


def test_a_subject_quoted_in_the_body_is_not_tagged() -> None:
    raw = b"From: a\nTo: b\n\n> Subject: hello\r\nquoted\r\n"
    out = rewrite_message(raw, TAG)
    assert out == added(b"\n") + b"From: a\nTo: b\nSubject: [SPAM]\n\n> Subject: hello\r\nquoted\r\n"
    raw = b"From: a\r\nTo: b\r\n\r\nSubject: hello\r\n"
    out = rewrite_message(raw, TAG)
    assert out == added(b"\r\n") + b"From: a\r\nTo: b\r\nSubject: [SPAM]\r\n\r\nSubject: hello\r\n"


def test_headers_with_no_final_line_end() -> None:
    raw = b"From: a@example.com\nTo: b@example.org"
    assert rewrite_message(raw, TAG) == added(b"\n") + raw + b"\nSubject: [SPAM]\n"
    raw = b"From: a@example.com\r\nSubject: hi"
    assert rewrite_message(raw, TAG) == added(b"\r\n") + b"From: a@example.com\r\nSubject: [SPAM] hi"


def test_a_message_starting_with_a_blank_line_has_an_empty_header_block() -> None:
    assert rewrite_message(b"\nbody\n", TAG) == added(b"\n") + b"Subject: [SPAM]\n\nbody\n"
    assert rewrite_message(b"\r\nbody\r\n", TAG) == added(b"\r\n") + b"Subject: [SPAM]\r\n\r\nbody\r\n"


def test_a_subject_with_space_before_the_colon_is_tagged_not_doubled() -> None:
    raw = b"From: a\r\nSubject : one\r\n\r\nbody\r\n"
    assert rewrite_message(raw, TAG) == added(b"\r\n") + b"From: a\r\nSubject : [SPAM] one\r\n\r\nbody\r\n"
    raw = b"SUBJECT\t:two\n\nbody\n"
    assert rewrite_message(raw, TAG) == added(b"\n") + b"SUBJECT\t:[SPAM] two\n\nbody\n"


def test_header_line_end() -> None:
    assert header_line_end(b"From: a\nTo: b\n\nx\r\n\r\n") == b"\n"
    assert header_line_end(b"From: a\r\n\r\n") == b"\r\n"
    assert header_line_end(b"\r\nbody\n") == b"\r\n"
    assert header_line_end(b"From: a") == b"\n"
    assert header_line_end(b"") == b"\n"


# The generated messages: header lines (names that are and are not Subject, folded, values with NUL
# and 8-bit bytes, already tagged), LF, CRLF or mixed line ends, a blank line of either style or
# none, and a body holding blank lines of both styles and Subject/From lines of its own.
NAMES = [b"From", b"To", b"X-Thing", b"Subject-Line", b"Resent-Subject", b"Subject", b"subject", b"SUBJECT "]
NAMES += [b"Subject\t "]
PIECES = [b"a", b" ", b"\t", b"\x00", b"\xe9\xff", b":", b"[SPAM]", b"[SPAM] ", b"Subject: x", b"\xc3\xa9"]
BODY_LINES = [b"", b"text", b"Subject: quoted", b"From: x", b"\x00", b"\r", GTUBE, b" \t"]
ENDS = [b"\n", b"\r\n"]


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, int, bytes, list[tuple[int, bytes]]]:
    """(raw, header block length, its line end, (offset where a tag goes, the value) per Subject field)."""
    style = draw(st.sampled_from(["lf", "crlf", "mixed"]))

    def end() -> bytes:
        return {"lf": b"\n", "crlf": b"\r\n"}.get(style) or draw(st.sampled_from(ENDS))

    def value() -> bytes:
        return b"".join(draw(st.lists(st.sampled_from(PIECES), max_size=4)))

    head = b""
    first_end: bytes | None = None
    subjects: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(NAMES))
        after_colon = draw(st.sampled_from([b"", b" ", b"\t", b"  "]))
        val = value()
        e = end()
        first_end = first_end or e
        if name.rstrip(b" \t").lower() == b"subject":
            tail = after_colon + val
            skip = 1 if tail[:1] in (b" ", b"\t") else 0  # one blank after the colon is not the value's
            subjects.append((len(head) + len(name) + 1 + skip, tail[skip:]))
        head += name + b":" + after_colon + val + e
        for _ in range(draw(st.integers(0, 2))):  # folded lines
            head += draw(st.sampled_from([b" ", b"\t"])) + value() + end()
    blank = draw(st.sampled_from([b"", b"\n", b"\r\n"]))
    body = b""
    if blank:
        for _ in range(draw(st.integers(0, 6))):
            body += draw(st.sampled_from(BODY_LINES)) + draw(st.sampled_from([*ENDS, b""]))
    elif head and draw(st.booleans()):
        head = head[: -len(b"\r\n" if head.endswith(b"\r\n") else b"\n")]  # no final line end
    le = first_end if b"\n" in head and first_end else blank if not head and blank else b"\n"
    return head + blank + body, len(head), le, subjects


@settings(max_examples=1500, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_the_original_is_the_output_less_the_added_lines_and_the_tag(
    case: tuple[bytes, int, bytes, list[tuple[int, bytes]]],
) -> None:
    raw, end, le, subjects = case
    out = rewrite_message(raw, TAG)
    assert out.startswith(added(le)), (raw, out)
    rest = out[len(added(le)) :]
    if subjects:  # Subject fields in the header block: the tag in front of each value, once
        expected = raw
        for pos, current in reversed(subjects):
            tag = b"" if current.startswith(b"[SPAM]") else b"[SPAM] "
            expected = expected[:pos] + tag + expected[pos:]
        assert rest == expected, (raw, out)
    else:  # none: one Subject line closing the header block (after a line end of its own)
        head = raw[:end]
        gap = le if head and not head.endswith(b"\n") else b""
        assert rest == head + gap + b"Subject: [SPAM]" + le + raw[end:], (raw, out)
    # an untagged verdict adds the lines and nothing else
    plain = Plan("DELIVER", (("X-Spam-Status", "No"),), "", "", "", "", "")
    assert rewrite_message(raw, plain) == b"X-Spam-Status: No" + le + raw
