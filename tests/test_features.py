"""Feature rows: stable hashing, field prefixes, language independence, config validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spamgate.model.features import FeatureConfig, FeatureExtractor
from spamgate.model.heuristics import HEURISTIC_NAMES
from spamgate.model.parse import VERDICT_HEADER_NAMES, parse_message
from spamgate.model.tokens import TokenConfig, message_tokens
from tests.mail import html, make

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (
    "import json,sys; from model.features import FeatureExtractor; from tests.mail import make;"
    "X=FeatureExtractor().transform([make(), make({'Subject':'Cheap pills'})]);"
    "print(json.dumps([X.indices.tolist(), [round(float(v),6) for v in X.data]]))"
)


def test_hashing_is_identical_across_processes() -> None:
    outs = set()
    for seed in ("0", "1", "12345", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        outs.add(r.stdout)
    assert len(outs) == 1
    indices, _ = json.loads(outs.pop())
    assert len(indices) > 20


def test_row_layout() -> None:
    fx = FeatureExtractor(FeatureConfig(n_bits=16, byte_ngram=0))
    X = fx.transform([make(), b"", b"\x00junk"])
    assert X.shape == (3, (1 << 16) + len(HEURISTIC_NAMES))
    tok = X[0, : 1 << 16].toarray()
    assert abs(float(np.sqrt((tok**2).sum())) - 1.0) < 1e-5  # L2-normalised token block


def test_tokens_carry_field_prefixes() -> None:
    toks = message_tokens(
        parse_message(make({"Subject": "Budget review"}, body="see http://www.example.com/x\n")),
        TokenConfig(),
    )
    assert toks["s:budget"] == 1 and toks["b:see"] == 1
    assert toks["fd:example.org"] == 1 and toks["u:example.com"] == 1
    assert "ri:93.184.216" in toks and "hn:message-id" in toks


def test_no_space_languages_get_character_ngrams() -> None:
    toks = message_tokens(parse_message(make(body="今天的会议记录在附件里")), TokenConfig())
    assert toks["b:会议"] == 1 and toks["b:记录"] == 1
    thai = message_tokens(parse_message(make(body="สวัสดีครับ")), TokenConfig())
    assert any(t.startswith("b:") and len(t) == 4 for t in thai)


def test_hidden_html_text_is_not_tokenised_as_visible() -> None:
    toks = message_tokens(
        parse_message(html('<p>offer</p><div style="display:none">kernel</div>')), TokenConfig()
    )
    assert "b:offer" in toks and "b:kernel" not in toks


def test_column_names_cover_the_row() -> None:
    for cfg in (FeatureConfig(n_bits=18), FeatureConfig(n_bits=18, byte_ngram=4)):
        fx = FeatureExtractor(cfg)
        row, parts = fx.transform_one(fx.parse(make()))
        hashed = {c for c in row.indices.tolist() if c < (1 << 18)}
        names = fx.column_names(parts, hashed)
        assert set(names) == hashed
        if cfg.byte_ngram:
            assert any(n.startswith("raw:") for ns in names.values() for n in ns)


def test_byte_ngrams_ignore_line_ending_style() -> None:
    fx = FeatureExtractor(FeatureConfig(n_bits=16, byte_ngram=4))
    crlf = make()
    lf = crlf.replace(b"\r\n", b"\n")
    assert (fx.transform([crlf]) != fx.transform([lf])).nnz == 0


def _gram_bytes(fx: FeatureExtractor, raw: bytes) -> set[bytes]:
    return {int(g).to_bytes(4, "big") for g in fx.grams(parse_message(raw))}


def test_byte_ngrams_reach_the_body_behind_long_headers() -> None:
    # A long relay chain (mailing lists, forwarders) used to fill the whole window with headers.
    relays = b"".join(
        b"Received: from relay%d.example.net by mx.example.org; Mon, 1 Jan 2024\r\n" % i for i in range(80)
    )
    raw = relays + b"Subject: deal\r\n\r\nzyxw cheap meds " + b"y" * 5000 + b" qqqq tail"
    grams = _gram_bytes(FeatureExtractor(FeatureConfig(n_bits=16)), raw)
    assert b"zyxw" in grams and b"Rece" in grams
    assert b"qqqq" not in grams  # past the body window
    assert b"Subj" not in grams  # past the header window (the relay lines fill it)


def test_byte_ngram_windows_are_configurable() -> None:
    raw = make(body="body words here")
    body_only = FeatureExtractor(FeatureConfig(n_bits=16, byte_ngram_header_bytes=0))
    assert b"body" in _gram_bytes(body_only, raw) and b"Subj" not in _gram_bytes(body_only, raw)
    headers_only = FeatureExtractor(FeatureConfig(n_bits=16, byte_ngram_body_bytes=0))
    assert b"Subj" in _gram_bytes(headers_only, raw) and b"body" not in _gram_bytes(headers_only, raw)
    assert _gram_bytes(headers_only, b"Subject: only headers\r\n") >= {b"only"}
    with pytest.raises(ValueError, match="byte_ngram_body_bytes"):
        FeatureConfig(byte_ngram_body_bytes=-1)


def test_short_message_grams_are_its_own_bytes() -> None:
    # Both windows cover a short message whole: its n-grams are exactly those of its bytes.
    raw = make(body="short body").replace(b"\r\n", b"\n")
    fx = FeatureExtractor(FeatureConfig(n_bits=16))
    assert _gram_bytes(fx, raw) == {raw[i : i + 4] for i in range(len(raw) - 3)}


def test_batch_rows_equal_single_rows() -> None:
    # The batch path leaves hash collisions as repeated entries, the single-row path merges them.
    fx = FeatureExtractor(FeatureConfig(n_bits=10))  # 1,024 columns: collisions are certain
    raws = [make(), html("<p>Cheap <b>pills</b> at http://x.example/</p>"), b"junk"]
    batch = fx.transform(raws).toarray()
    single = np.vstack([fx.transform_one(fx.parse(r))[0].toarray() for r in raws])
    assert np.allclose(batch, single)


def test_header_name_and_content_type_tokens_can_be_left_out() -> None:
    """The bundled (day-0) recipe leaves them out (training.default_model); nothing else moves."""
    view = parse_message(make({"Subject": "Budget review", "X-Mailer": "Mutt"}, body="see you\n"))
    full = message_tokens(view, TokenConfig())
    assert "hn:x-mailer" in full and "ct:text/plain" in full
    for cfg, gone in (
        (TokenConfig(header_names=False), "hn:"),
        (TokenConfig(content_types=False), "ct:"),
    ):
        some = message_tokens(view, cfg)
        assert {t for t in full if not t.startswith(gone)} == set(some)
    day0 = FeatureConfig(tokens=TokenConfig(header_names=False, content_types=False))
    assert FeatureConfig.from_dict(day0.to_dict()) == day0
    # an artifact written before the two fields existed reads as both on
    old = FeatureConfig().to_dict()
    del old["tokens"]["header_names"], old["tokens"]["content_types"]
    assert FeatureConfig.from_dict(old) == FeatureConfig()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="n_bits"):
        FeatureConfig(n_bits=40)
    with pytest.raises(ValueError, match="weighting"):
        FeatureConfig(weighting="tfidf")
    cfg = FeatureConfig(n_bits=12, tokens=TokenConfig(word_bigrams=True))
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError):
        FeatureConfig.from_dict({**cfg.to_dict(), "surprise": 1})


def test_optional_bigrams_and_char_ngrams_are_counted() -> None:
    view = parse_message(make(body="free money free money"))
    toks = message_tokens(view, TokenConfig(word_bigrams=True, char_ngram=4))
    assert toks["b:free"] == 2 and toks["b:free_money"] == 2 and toks["b:money_free"] == 1
    assert toks["b:c: mon"] == 2 and toks["b:c:ney "] == 2 and "b:c: fre" not in toks  # words > n only


def test_other_filters_verdict_headers_are_not_features() -> None:
    # Any sender can write "X-Spam-Status: No"; it must not move the score (nor our own headers,
    # when reported mail that went through spamgate is retrained on).
    fx = FeatureExtractor()
    plain = make({"Subject": "Cheap pills"})
    forged = make(
        {"Subject": "Cheap pills"},
        extra=[
            ("X-Spam-Status", "No, score=-5.0 required=5.0\r\n\ttests=ALL_TRUSTED autolearn=ham"),
            ("X-Spam-Level", ""),
            ("X-Bogosity", "Ham, tests=bogofilter"),
            ("x-spam-probability", "0.0100"),
        ],
    )
    assert forged != plain
    assert (fx.transform([plain]) != fx.transform([forged])).nnz == 0
    lf = forged.replace(b"\r\n", b"\n")
    assert (fx.transform([plain]) != fx.transform([lf])).nnz == 0
    assert parse_message(forged).header("X-Spam-Status") is None
    assert "planning meeting" in parse_message(forged).text


def test_token_column_memo_changes_nothing() -> None:
    from spamgate.model.hashing import byte_ngram_columns, token_columns

    tokens = [f"b:word{i % 50}" for i in range(300)]
    memo: dict[str, int] = {}
    assert token_columns(tokens, 1 << 20, memo).tolist() == token_columns(tokens, 1 << 20).tolist()
    assert token_columns(tokens, 1 << 20, memo).tolist() == token_columns(tokens, 1 << 20).tolist()
    assert len(memo) == 50
    grams = np.arange(1000, dtype=np.uint64) * np.uint64(2654435761)
    # the power-of-two mask and the general modulo agree where both apply
    assert (byte_ngram_columns(grams, 1 << 20) == byte_ngram_columns(grams, (1 << 21)) % (1 << 20)).all()


# sg-features-8 (issue 14): features that only say which script or charset a message is in are gone.
RUSSIAN = "Добрый день, Ольга!\nДоговор подписан, счёт пришлём завтра.\nС уважением, Иван\n"


def test_transfer_encoding_is_not_a_feature() -> None:
    # The same text as raw 8-bit and as quoted-printable: cte:8bit vs cte:quoted-printable said
    # "non-ASCII text" and was learned as spam evidence from nearly all-English ham.
    import quopri

    eight = make({"Content-Transfer-Encoding": "8bit"}, body=RUSSIAN)
    qp_body = quopri.encodestring(RUSSIAN.encode("utf-8")).decode("ascii")
    qp = make({"Content-Transfer-Encoding": "quoted-printable"}, body=qp_body)
    t8, tq = (message_tokens(parse_message(r), TokenConfig()) for r in (eight, qp))
    assert "b:договор" in t8
    assert not any(t.startswith("cte:") for t in [*t8, *tq])
    assert dict(t8) == dict(tq)


def test_byte_ngrams_hold_only_ascii_bytes() -> None:
    raw = make({"Content-Transfer-Encoding": "8bit"}, body=RUSSIAN + "invoice 4471 attached\n")
    grams = _gram_bytes(FeatureExtractor(FeatureConfig(n_bits=16)), raw)
    assert b"invo" in grams and b"4471" in grams
    assert grams and all(max(g) < 0x80 for g in grams)


@pytest.mark.parametrize("name", VERDICT_HEADER_NAMES)
def test_every_listed_verdict_header_is_removed(name: str) -> None:
    """One list (issue 18): each name in it is gone from the view, with or without a suffix, folded or not."""
    fx = FeatureExtractor()
    plain = make({"Subject": "Quarterly report"})
    header = "-".join(w.capitalize() for w in name.split("-"))
    extra = [(header + "-Flag", "NO\r\n\tfolded=1"), (header, "ham")]
    forged = make({"Subject": "Quarterly report"}, extra=extra)
    assert (fx.transform([plain]) != fx.transform([forged])).nnz == 0
    view = parse_message(forged)
    assert view.header(header) is None and view.header(header + "-Flag") is None
