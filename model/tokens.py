"""Token features: which strings from a message are counted, and why.

Every token carries a field prefix (``s:`` subject, ``b:`` body, ``fd:`` From
domain, …): "free" in a subject and "free" in a body are different evidence.
The choices below were measured on the peers' splits S1 (SpamAssassin, random
50/50) and S2 (trec07p_dev time split, older 12,500 train / newer 12,500 test)
with everything else fixed; figures are 1-ROCA% (lower is better), S1 / S2,
from ``python bench/ablation.py`` (stage 1: SGD, no byte n-grams; baseline
0.1522 / 0.0562) — see BENCHMARKS.md for the full table.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import pairwise

from spamgate.model.message import MessageView
from spamgate.model.urls import is_ip_literal, parent_domains

# Words: runs of letters/digits, allowing inner ' . - (so "e-mail", "don't"
# and "v1.2" stay one token). No-space scripts (CJK, Thai…) are cut out first
# and turned into character bigrams, so the same code works for mail in
# languages without spaces.
_NO_SPACE_SCRIPT = re.compile(
    r"[\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf"
    r"\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
)
_WORD = re.compile(r"[^\W_]+(?:['.\-][^\W_]+)*")
_DIGITS = re.compile(r"\d")


# Defaults and their evidence (stage-1 ablation, S1 / S2 1-ROCA%):
# - lowercase: on. (Case is kept by the byte 4-grams anyway.)
# - word_bigrams: off. With bigrams 0.1756 / 0.0612, worse on both splits:
#   more rare features for the same 12,500 training messages.
# - char_ngram: off. Byte 4-grams over the raw head of the message cover the
#   sub-word evidence (obfuscation, inflection) for less work.
# - numbers are reduced to their length ("num:5") and runs longer than 30
#   characters to a shape token, as SpamBayes does: ids and base64 junk would
#   otherwise each be a one-off feature.
@dataclass(frozen=True)
class TokenConfig:
    """Parameters of token extraction (recorded in every artifact).

    lowercase: fold case of words.
    word_bigrams: add adjacent word pairs from the subject and body.
    char_ngram: if > 0, also add character n-grams of this length from each
        body word (sub-word evidence for obfuscated and inflected words).
    cjk_ngram: character n-gram length for no-space scripts.
    max_word_len: longer "words" (base64 junk, hashes) become a shape token.
    max_body_words: body words considered; bounds work per message.
    header_names: count each header field's name (``hn:``).
    content_types: count each MIME part's content type (``ct:``).
    """

    lowercase: bool = True
    word_bigrams: bool = False
    char_ngram: int = 0
    cjk_ngram: int = 2
    max_word_len: int = 30
    max_body_words: int = 3000
    # Both on by default, and in the bundled model. Off is for a recipe meant for sites it never saw
    # (bench/day0_variants.py, variants nhc_*): which header fields and MIME types a message carries
    # is which MUA, list server and gateway the training sites ran. Left out, the bundled recipe ranked a
    # left-out site's mail better (1-ROCA% fitted without it: trec07p 2.97 -> 2.55, Enron-Spam 15.7
    # -> 15.0) while S1 and S2 trained on their own mail did not move (0.0087 / 0.0277 -> 0.0086 /
    # 0.0268): bench/day0_variants.py, variants base and no_hn_ct (BENCHMARKS.md, "Recipe variants").
    header_names: bool = True
    content_types: bool = True

    def __post_init__(self) -> None:
        if not (0 <= self.char_ngram <= 8):
            raise ValueError(f"char_ngram must be in 0..8, got {self.char_ngram}")
        if not (1 <= self.cjk_ngram <= 4):
            raise ValueError(f"cjk_ngram must be in 1..4, got {self.cjk_ngram}")
        if self.max_word_len < 4:
            raise ValueError(f"max_word_len must be >= 4, got {self.max_word_len}")
        if self.max_body_words < 1:
            raise ValueError(f"max_body_words must be >= 1, got {self.max_body_words}")


# Token → count. A defaultdict rather than a Counter: ``out[t] += 1`` on a new key calls
# Counter.__missing__, a Python function, ~170 times a message (15% of tokenising time);
# defaultdict does that in C.
TokenCounts = defaultdict[str, int]


def _word_token(word: str, cfg: TokenConfig) -> str:
    if len(word) > cfg.max_word_len:
        # SpamBayes' "skip" tokens: keep the fact that a long run was here, not its bytes.
        return f"long:{word[0]}{len(word) // 10}"
    if word.isdigit():
        # Numbers are mostly unique (prices, ids): keep their length, not their value.
        return f"num:{len(word)}"
    return word


def text_tokens(text: str, prefix: str, cfg: TokenConfig, out: TokenCounts, limit: int) -> None:
    """Add words (and configured n-grams) of ``text`` under ``prefix`` to ``out``."""
    if cfg.lowercase:
        text = text.lower()
    if not text.isascii():
        for run in _NO_SPACE_SCRIPT.findall(text):
            n = cfg.cjk_ngram
            if len(run) <= n:
                out[prefix + run] += 1
            else:
                for i in range(len(run) - n + 1):
                    out[prefix + run[i : i + n]] += 1
        text = _NO_SPACE_SCRIPT.sub(" ", text)
    words = _WORD.findall(text)[:limit]
    maxlen = cfg.max_word_len
    if not cfg.word_bigrams and not cfg.char_ngram:
        # Count first (C speed), then name each distinct word once: about half of a body's
        # words are repeats, and this loop was the tokenizer's largest cost.
        for w, c in Counter(words).items():
            out[prefix + (w if len(w) <= maxlen and not w.isdigit() else _word_token(w, cfg))] += c
        return
    toks = [w if len(w) <= maxlen and not w.isdigit() else _word_token(w, cfg) for w in words]
    found = [prefix + t for t in toks]
    if cfg.word_bigrams and len(toks) > 1:
        found += [f"{prefix}{a}_{b}" for a, b in pairwise(toks)]
    if cfg.char_ngram:
        n = cfg.char_ngram
        cp = prefix + "c:"
        for w in toks:
            if len(w) > n and not w.startswith(("long:", "num:")):
                padded = f" {w} "
                found += [cp + padded[i : i + n] for i in range(len(padded) - n + 1)]
    for token, count in Counter(found).items():
        out[token] += count


def _addr_tokens(prefix: str, address: str, out: TokenCounts) -> None:
    _, at, dom = address.lower().rpartition("@")
    if not at:
        return
    dom = dom.strip().strip(">")
    for d in parent_domains(dom):
        out[prefix + d] += 1


def _ip_tokens(prefix: str, ip: str, out: TokenCounts) -> None:
    octets = ip.split(".")
    if len(octets) == 4:
        out[prefix + ".".join(octets[:3])] += 1
        out[prefix + ".".join(octets[:2])] += 1


def header_tokens(view: MessageView, cfg: TokenConfig, out: TokenCounts) -> None:
    """Tokens from selected headers: sender domains, relays, mailer, MIME shape."""
    if view.from_addr is not None:
        _addr_tokens("fd:", view.from_addr.address, out)
        if view.from_addr.display:
            text_tokens(view.from_addr.display, "fn:", cfg, out, 20)
        else:
            out["fn:<none>"] += 1
    if view.reply_to is not None:
        _addr_tokens("rd:", view.reply_to.address, out)
    if view.return_path:
        _addr_tokens("rp:", view.return_path, out)
    # The newest three hops are the ones the receiving site added or saw
    # directly; older hops are sender-controlled and cheap to forge.
    for hop in view.received[:3]:
        if hop.authenticated:
            # One token for "a mail program submitted this with SMTP AUTH"; its HELO is noise.
            out["rh:<auth>"] += 1
        elif hop.helo:
            if is_ip_literal(hop.helo):
                out["rh:<ip>"] += 1
            else:
                for d in parent_domains(hop.helo, 2):
                    out["rh:" + d] += 1
        if hop.rdns:
            for d in parent_domains(hop.rdns, 2):
                out["rr:" + d] += 1
        if hop.ip:
            _ip_tokens("ri:", hop.ip, out)
    out[f"nrcvd:{min(len(view.received), 10)}"] += 1
    for name in ("X-Mailer", "User-Agent"):
        value = view.header(name)
        if value:
            out["xm:" + _DIGITS.sub("9", value.lower())[:60]] += 1
            text_tokens(value, "xmw:", cfg, out, 10)
    if view.message_id:
        _, _, mdom = view.message_id.strip("<> ").rpartition("@")
        if mdom:
            out["mid:" + mdom.lower()[:60]] += 1
        out["mids:" + re.sub(r"[a-z]", "a", _DIGITS.sub("9", view.message_id.lower()))[:40]] += 1
    # Header names: bulk tools and MUAs each leave their own set of X- headers.
    if cfg.header_names:
        for name, _ in view.headers[:100]:
            out["hn:" + name.lower()[:40]] += 1
    if cfg.content_types:
        for ctype in view.content_types[:20]:
            out["ct:" + ctype] += 1
    for cs in view.charsets[:5]:
        out["cs:" + cs.lower()[:30]] += 1
    # No transfer-encoding tokens since sg-features-8 (issue 14): a text part's encoding is mostly
    # which script its text is in (7bit = ASCII only; 8bit, quoted-printable, base64 = not), and
    # trained on mail whose ham is nearly all English, cte:8bit (+0.20) and cte:quoted-printable
    # (+0.11) against cte:7bit (-0.15) taught "not English" as spam evidence. Without them the
    # bundled recipe gave the multilingual set's ham a mean p of 0.565 instead of 0.577, S1 and S2
    # unchanged (bench/language_families.py, variant no_cte; BENCHMARKS.md).


def url_tokens(view: MessageView, out: TokenCounts) -> None:
    """URL hosts and their parent domains; never paths (randomised per message)."""
    for host in view.url_hosts:
        if not host:
            continue
        if is_ip_literal(host):
            out["u:<ip>"] += 1
            continue
        for d in parent_domains(host):
            out["u:" + d] += 1


def attachment_tokens(view: MessageView, out: TokenCounts) -> None:
    """Attachment extensions and sniffed types."""
    for att in view.attachments[:20]:
        _, dot, ext = att.filename.lower().rpartition(".")
        if dot and 0 < len(ext) <= 8:
            out["ax:" + ext] += 1
        out["at:" + att.sniffed_type] += 1


def message_tokens(view: MessageView, cfg: TokenConfig) -> TokenCounts:
    """All token features of one message with their counts."""
    out: TokenCounts = defaultdict(int)
    text_tokens(view.subject, "s:", cfg, out, 100)
    text_tokens(view.all_text, "b:", cfg, out, cfg.max_body_words)
    header_tokens(view, cfg, out)
    url_tokens(view, out)
    attachment_tokens(view, out)
    return out
