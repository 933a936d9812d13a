"""Declared charsets are the sender's: decoding never raises, never stalls, never grows a cache.

Each case here is a finding of an attack review (model/charsets.py has the figures).
"""

from __future__ import annotations

import encodings
import encodings.aliases

import pytest

from spamgate.model.charsets import MAX_NAME, codec_name, decode_bytes, without_surrogates
from spamgate.model.features import FeatureConfig, FeatureExtractor
from spamgate.model.hashing import MEMO_MAX_CHARS, token_columns
from spamgate.model.mime import parse_params
from spamgate.model.parse import decode_header_value, parse_message
from tests.mail import make, multipart

HOSTILE = bytes(range(256)) * 4 + "Grüße, привет, 你好".encode() + b"+2AA- \\ud800 \\x00 \xff\xfe"


def test_mail_charsets_resolve_to_their_codecs() -> None:
    assert codec_name("UTF-8") == "utf_8"
    assert codec_name(' "iso-8859-1" ') == "latin_1"
    assert codec_name("windows-1251") == "cp1251"
    assert codec_name("GB2312") == "gb2312"
    assert codec_name("koi8-r") == "koi8_r"
    assert codec_name("Shift_JIS") == "shift_jis"
    assert codec_name("utf-7") == "utf_7"
    assert codec_name("utf---8") == "utf_8"  # looked up as "utf_8", not as the sender spelled it


@pytest.mark.parametrize(
    "name",
    ["punycode", "idna", "undefined", "unicode_escape", "raw-unicode-escape", "base64", "rot13", "zlib",
     "hex", "x" * (MAX_NAME + 1), "no-such-charset", "", None, "../../etc/passwd"],
)  # fmt: skip
def test_non_charsets_are_refused(name: str | None) -> None:
    assert codec_name(name) is None


def _every_codec_name() -> list[str]:
    return sorted(set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values()))


def test_decoding_never_raises_and_never_leaves_a_surrogate() -> None:
    """Every codec name and alias Python knows, over hostile bytes (idna and undefined raised,
    utf-7 and the escape codecs left lone surrogates that crashed the token hash)."""
    for name in [*_every_codec_name(), "punycode", "idna", "undefined", "unicode_escape"]:
        text = decode_bytes(HOSTILE, name)
        assert text == without_surrogates(text), name
        text.encode("utf-8")  # what the token hash does


def test_unknown_charsets_leave_no_trace_in_the_codec_caches() -> None:
    """encodings kept every unknown name asked for: 200 messages grew a worker by 97 MB."""
    decode_bytes(b"x", "utf-8")
    before = len(encodings._cache)
    for i in range(2000):
        decode_bytes(b"hello", f"{i}-nonsense-{i}")
        decode_bytes(b"hello", "utf" + "-" * (i % 30 + 1) + "8")
    assert len(encodings._cache) <= before + 2


def test_rfc2231_parameters_use_the_same_rules() -> None:
    """The parameter decoder called the codec directly: punycode (quadratic), idna (UnicodeError),
    a NUL in the name (ValueError) lost the whole parse."""
    for charset in ("idna", "undefined", "utf\x00-8", "punycode", "nonsense"):
        params = parse_params(f"attachment; filename*0*={charset}''caf%C3%A9.pdf")
        assert params["filename"] in ("café.pdf", "cafÃ©.pdf"), charset
    # UTF-7 decodes "+2AA-" to a lone surrogate: the parameter holds U+FFFD instead (no test reached
    # _rfc2231's without_surrogates before: the filename never becomes a token).
    assert parse_params("attachment; filename*0*=utf-7''%2B2AA-.pdf")["filename"] == "\ufffd.pdf"
    raw = make({"Content-Type": "text/plain; charset=utf-8; x*0*=idna''a"})
    view = parse_message(raw)
    assert not [c for c in view.cut if c.startswith("parse_error")] and view.from_addr is not None


@pytest.mark.parametrize(
    "raw",
    [
        make(extra=[("X-Mailer", "=?utf-7?q?+2AA-?=")]),
        make({"From": "=?utf-7?q?+2AA-?= <a@example.org>", "Message-ID": "<+2AA-@x>"}),
        make({"Content-Type": "text/plain; charset=utf-7"}, body="see http://a+2AA-.example/ now"),
        multipart(
            [
                ("text/html; charset=utf-7", "", '<a href="http://a+2AA-.example/">x</a>'),
                ("application/pdf", "Content-Disposition: attachment; filename*0*=utf-7''%2B2AA-.pdf\n", "x"),
            ]
        ),
    ],
)
def test_lone_surrogates_never_reach_the_hash(raw: bytes) -> None:
    fx = FeatureExtractor(FeatureConfig())
    row, parts = fx.transform_one(fx.parse(raw))
    assert row.nnz > 0
    assert all(t == without_surrogates(t) for t in parts.tokens)


def test_header_words_in_utf7_decode_to_replacement_characters() -> None:
    assert decode_header_value("=?utf-7?q?+2AA-?=") == "\ufffd"


def test_the_hash_takes_a_lone_surrogate() -> None:
    """Any other route to the hash: the column is the surrogatepass bytes' hash, never an exception."""
    cols = token_columns(["b:\ud800", "b:ok"], 1 << 20)
    assert cols.shape == (2,) and cols[1] == token_columns(["b:ok"], 1 << 20)[0]


def test_long_tokens_are_hashed_but_not_memoised() -> None:
    """The memo counts entries; tokens from header values have no length limit of their own."""
    memo: dict[str, int] = {}
    long = ["ct:x/" + str(i) + "y" * 24_000 for i in range(20)]
    short = ["b:word"]
    cols = token_columns(long + short, 1 << 20, memo)
    assert list(memo) == short and cols.tolist() == token_columns(long + short, 1 << 20).tolist()
    assert len("ct:x/0") <= MEMO_MAX_CHARS


def test_only_the_exact_name_utf_8_is_read_strictly() -> None:
    """As before model.charsets: "utf-8" strict with a Latin-1 fallback, other spellings replace."""
    assert decode_bytes(b"caf\xc3", "utf-8") == "caf\xc3"
    assert decode_bytes(b"caf\xc3", "utf8") == "caf\ufffd"
    assert decode_bytes("café".encode(), "utf8") == decode_bytes("café".encode(), "utf-8") == "café"


def test_a_known_name_spelled_past_the_length_bound_is_refused() -> None:
    """The bound is on the name as sent: "utf" + 40 dashes + "8" normalises to utf_8 but is refused."""
    assert codec_name("utf-" + "-" * (MAX_NAME - 5) + "8") == "utf_8"
    assert codec_name("utf-" + "-" * MAX_NAME + "8") is None


@pytest.mark.parametrize(
    ("charset", "codec", "text"),
    [
        ("windows-874", "cp874", "เรียนคุณสมชาย ประชุมวันพฤหัสบดีเวลาสิบโมง"),
        ("iso-8859-8-i", "iso8859_8", "שלום רב, הפגישה נדחתה ליום חמישי"),
        ("ks_c_5601-1987", "cp949", "안녕하세요, 회의는 목요일로 옮겼습니다. 똠방각하"),
        ("x-mac-cyrillic", "mac_cyrillic", "Добрый день, встреча перенесена"),
    ],
)
def test_mail_charset_names_python_lacks_are_decoded(charset: str, codec: str, text: str) -> None:
    """Thai, Hebrew and Korean mail from common clients declares these; they read as Latin-1 mojibake."""
    assert codec_name(charset) == codec
    raw = make({"Content-Type": f"text/plain; charset={charset}"}, body="").replace(
        b"\r\n\r\n", b"\r\n\r\n" + text.encode(codec), 1
    )
    assert parse_message(raw).text.startswith(text)
