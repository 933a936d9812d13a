"""Raw message → one sparse feature row: hashed tokens + heuristics.

Columns ``[0, 2**n_bits)`` hold hashed token features; the next
``len(HEURISTICS)`` columns hold heuristic values, unhashed, so a rule never
collides with a token and its weight is readable by name.

Hashing is ``model.hashing`` (MurmurHash3, seed 0): stable across processes
and machines, unlike Python's salted ``hash()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import scipy.sparse as sp

from spamgate.model.config_fields import check_field_types
from spamgate.model.hashing import byte_ngram_columns, byte_ngrams, token_columns
from spamgate.model.heuristics import HEURISTIC_NAMES, heuristic_values
from spamgate.model.limits import ParseLimits
from spamgate.model.message import MessageView
from spamgate.model.parse import MAX_RAW_PREFIX, parse_message
from spamgate.model.tokens import TokenConfig, TokenCounts, message_tokens

# Bump when any change to parsing, tokens, heuristics or hashing would give a
# different row for the same bytes and parameters. An artifact records this
# and is refused by code with a different value.
# sg-features-5: MIME split by model.mime instead of email.feedparser (nested boundaries
# that extend their parent's, header lines without a colon, missing ";" before parameters
# now parse as mail clients show them), hand-written address parsing.
# sg-features-6: other filters' verdict headers (X-Spam-*, X-Bogosity, …) removed before
# featurising (model.parse.VERDICT_HEADER).
# sg-features-7: byte n-grams from two windows (the header block's first bytes and the
# body's first bytes) instead of one window over the message's first 3000 bytes.
# sg-features-8: no feature that only says which script a message is in (issue 14): no cte:
# transfer-encoding tokens, byte n-grams of ASCII bytes only, SUBJECT_ALL_CAPS / BODY_CAPS_RATIO
# count letters and capitals of every script. The bundled recipe refitted with these
# (bench/language_families.py, variant cte_grams_caps, against sg-features-7): the multilingual
# set's 80 ham mean p 0.577 -> 0.549 (median 0.570 -> 0.534; lower in all 15 languages), ham at or
# above its own FPR-1% point 77 -> 75, at the new-site TAG/REROUTE 0.9786/0.9931 1 / 0 -> 1 / 0,
# spam at TAG 19 / 24 -> 19 / 24; S1 1-ROCA% 0.0090 -> 0.0087 (catch at 0.1% FPR 98.41% both),
# S2 0.0277 -> 0.0276 (99.38% both): inside the noise DEVELOPERS.md states.
# sg-features-9: a Received hop whose client authenticated (model.parse._RCVD_AUTH) gives the token
# "rh:<auth>" instead of its HELO's, and the HELO/rDNS heuristics skip it (issue 14; figures in
# BENCHMARKS.md, "Authenticated submission").
# sg-features-10: the header-presence heuristics are silent on text with no header field at all
# (model.heuristics; issue 14, "body text only" mail). No training message of the shared corpora has
# no header field, so their rows are unchanged.
# sg-features-11: a top-level header block none of whose field names is a mail header
# (model.mime.is_mail_field) is text: "Note: the meeting moved" or a first-line URL no longer parse
# as headers of text handed over alone. Every shared-corpus message has such a field: rows unchanged.
# Declared charsets go through model.charsets (a fixed set of Python's codec names, no punycode, idna,
# undefined or escape codecs, lone surrogates replaced), RFC 2231 parameters too (attack review). The
# rebuilt bundled model's weights and points are the sg-features-10 model's byte for byte.
# sg-features-12: model.charsets also knows the mail charset names Python lacks (windows-874 for Thai,
# iso-8859-8-i for Hebrew, ks_c_5601-1987 as cp949, x-mac-*, x-sjis, …): declared 74 times in the shared
# corpora, whose rows change for those messages.
# sg-features-13: BASE64_TEXT_BODY fires only on base64 text that decodes to ASCII (model.heuristics:
# base64 alone mostly said "not in Latin script"); rows change for the 143 corpus messages with
# non-ASCII base64 text.
FEATURE_VERSION = "sg-features-13"

_WEIGHTINGS = ("log", "binary")
# Per n-gram length: the mask of each packed byte's top bit (a byte >= 0x80 somewhere in the n-gram).
_HIGH_BYTES = {n: np.uint64(int("80" * n, 16)) for n in range(1, 9)}


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of the feature pipeline (recorded in each artifact).

    n_bits: token hash space is ``2**n_bits`` columns.
    weighting: ``log`` (1 + ln count) or ``binary`` token values.
    l2_normalize: scale the token part of each row to unit length, so long
        messages don't get larger margins just for being long.
    heuristic_scale: multiplier for heuristic columns (they compete with
        L2-normalised token values under one regulariser).
    token_weight: length of the (normalised) token block.
    byte_ngram: if > 0, binary byte n-grams of this length over two raw
        windows (line ends normalised): the header block's first
        ``byte_ngram_header_bytes`` bytes and the body's first
        ``byte_ngram_body_bytes`` bytes; hashed into the same space as the
        tokens. Language- and tokenisation-independent.
    byte_ngram_weight: length of the (normalised) byte n-gram block.
    byte_ngram_lowercase: fold ASCII case before taking byte n-grams.
    tokens: token extraction parameters.
    limits: parse limits (they change what is seen, so they are part of it).
    """

    n_bits: int = 20
    # Binary token values beat 1 + ln(count) on the time split (S2 1-ROCA% 0.0393 → 0.0349, catch at
    # 0.1% FPR 99.07% → 99.58%); S1 0.0333 → 0.0348, catch 92.16% → 92.48% (bench/ablation.py, stage 3).
    # Kept where it pays on the time split, as spam drifts and that is the honest test.
    weighting: str = "binary"
    l2_normalize: bool = True
    # Heuristics at 0.1 of a token block's length: at 1.0 a handful of rules
    # outweighed the text (S1 1-ROCA% 0.0953, S2 0.0500); at 0.3: 0.0440 / 0.0432;
    # at 0.1: 0.0333 / 0.0394; off: 0.0337 / 0.0383 (bench/ablation.py, stage 2). Kept at 0.1:
    # no worse than off, and the rules stay visible in the reasons of a verdict.
    heuristic_scale: float = 0.1
    token_weight: float = 1.0
    # Byte 4-grams of the first 3000 raw bytes (headers included), as in the
    # best TREC 2007 filters: S2 1-ROCA% 0.0562 → 0.0500 and catch at 0.1% FPR
    # 98.2% → 99.0%; S1 0.1522 → 0.0953. 3- and 5-grams, case folding: no better.
    byte_ngram: int = 4
    # Two windows, headers and body, since sg-features-7 (stage 7, linear SVM C=1). One window
    # over the first 3000 bytes never reached the body of mail that came through a mailing list
    # or a long relay chain: SpamAssassin-corpus headers run to 3-4 kB, and of S1's 41 spam
    # missed at 0.1% FPR the lowest-scored were list-delivered (xent.com, sourceforge) with no
    # body byte in the window. 1-ROCA%, one 3000-byte window → headers 3000 + body 1000:
    #   S1 0.0103 → 0.0090, S2 0.0290 → 0.0277, csdmc2010 0.0101 → 0.0088,
    #   Enron-Spam 0.0528 → 0.0488, Ling-Spam 0.0193 → 0.0217 (no headers: its window shrank).
    # Body window 700 / 1000 / 1500: S1 0.0076 / 0.0090 / 0.0111, S2 0.0279 / 0.0277 / 0.0278,
    # csdmc2010 0.0085 / 0.0088 / 0.0098, Ling-Spam 0.0214 / 0.0217 / 0.0186: a tie, kept 1000.
    # Header window 2000: S1 0.0087, S2 0.0276, csdmc2010 0.0093, Enron 0.0517. Headers only (no
    # body window) won S1 (0.0040) and csdmc2010 (0.0054) and fell apart on Ling-Spam (0.0896):
    # header layout separates one corpus's spam traps from its ham, the body generalises. Body
    # only lost everywhere (S1 0.0426). Scratch runs not kept (so no figures here) also lost:
    # the decoded body text instead of its raw bytes (worse on S2), dropping Received lines from
    # the header window (worse on S1), one 4000-byte budget with headers capped at 3000.
    byte_ngram_header_bytes: int = 3000
    byte_ngram_body_bytes: int = 1000
    # Byte n-gram block twice the token block's length (stages 4-5, averaged SGD, C=30), 1-ROCA%
    # for block 1.0 / 1.5 / 2.0 / 3.0:
    #   S2 (time split, the deciding one) 0.0342 / 0.0287 / 0.0260 / 0.0283
    #   S1 0.0213 / 0.0186 / 0.0183 / 0.0132; csdmc2010 0.0120 / 0.0137 / 0.0137 / 0.0180
    #   Ling-Spam 0.0256 / 0.0217 / 0.0252 / 0.0665; Enron 0.0734 / 0.0750 / 0.0943 / 0.0881
    # 3.0 wins S1 only and falls apart on Ling-Spam; 2.0 wins the time split and ties on
    # csdmc2010. The two header-less corpora (Enron, Ling-Spam) prefer less; gateway mail has
    # headers. Rechecked with the SVM and sg-features-7 windows (stage 7), 1.0 / 2.0 / 3.0:
    # S1 0.0139 / 0.0090 / 0.0086, S2 0.0326 / 0.0277 / 0.0267, csdmc2010 0.0099 / 0.0088 /
    # 0.0097, Ling-Spam 0.0600 / 0.0217 / 0.0182, Enron 0.0497 / 0.0488 / 0.0525: 1.0 loses,
    # 2.0 and 3.0 tie (3.0 ahead on three corpora, behind on two), kept 2.0.
    byte_ngram_weight: float = 2.0
    byte_ngram_lowercase: bool = False
    tokens: TokenConfig = field(default_factory=TokenConfig)
    limits: ParseLimits = field(default_factory=ParseLimits)

    def __post_init__(self) -> None:
        if not (10 <= self.n_bits <= 26):
            raise ValueError(f"n_bits must be in 10..26, got {self.n_bits}")
        if self.weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {self.weighting!r}")
        if not (0.0 <= self.heuristic_scale <= 100.0):
            raise ValueError(f"heuristic_scale must be in [0, 100], got {self.heuristic_scale}")
        if not (0 <= self.byte_ngram <= 8):
            raise ValueError(f"byte_ngram must be in 0..8, got {self.byte_ngram}")
        for name in ("byte_ngram_header_bytes", "byte_ngram_body_bytes"):
            if not 0 <= getattr(self, name) <= MAX_RAW_PREFIX:
                raise ValueError(f"{name} must be in 0..{MAX_RAW_PREFIX}, got {getattr(self, name)}")
        for name in ("token_weight", "byte_ngram_weight"):
            if not 0.0 <= getattr(self, name) <= 100.0:
                raise ValueError(f"{name} must be in [0, 100], got {getattr(self, name)}")

    @property
    def n_hash(self) -> int:
        return 1 << self.n_bits

    @property
    def n_columns(self) -> int:
        return self.n_hash + len(HEURISTIC_NAMES)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for manifests."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Inverse of ``to_dict``; unknown keys are an error (a newer artifact), and so is a value
        of the wrong type (``model.config_fields``: ``"n_bits": 12.0`` passed the range check)."""
        d = dict(data)
        check_field_types(cls, d)
        raw_tokens = d.pop("tokens", {})
        if isinstance(raw_tokens, Mapping):
            check_field_types(TokenConfig, raw_tokens, "tokens.")
        tokens = TokenConfig(**raw_tokens)
        limits = ParseLimits(**d.pop("limits", {}))
        return cls(tokens=tokens, limits=limits, **d)


@dataclass(frozen=True)
class RowParts:
    """What one message's row was built from (for naming the columns of a verdict's reasons)."""

    tokens: list[str]
    grams: np.ndarray  # packed byte n-grams
    token_cols: np.ndarray  # column of each token, as hashed for the row
    gram_cols: np.ndarray  # column of each byte n-gram


class FeatureExtractor:
    """Transformer from messages to rows; safe to share across threads.

    Its only state is a memo of token columns, which changes speed, never rows.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        # Token → column memo (model.hashing.token_columns): a speed-up only, rows are the same
        # without it. Safe to share across threads (single dict operations hold the GIL).
        self._columns: dict[str, int] = {}

    def parse(self, raw: bytes) -> MessageView:
        return parse_message(raw, self.config.limits)

    def tokens(self, view: MessageView) -> TokenCounts:
        return message_tokens(view, self.config.tokens)

    def _token_values(self, counts: TokenCounts) -> dict[str, float]:
        if self.config.weighting == "binary":
            return dict.fromkeys(counts, 1.0)
        return {t: 1.0 + math.log(c) for t, c in counts.items()}

    def grams(self, view: MessageView) -> np.ndarray:
        """Distinct byte n-grams of the header block's and the body's first bytes.

        Line ends are normalised to LF first: gateways hand us CRLF (SMTP),
        corpora are stored with LF, and without it every n-gram spanning a
        line end would differ between training and serving. The two windows
        are joined by a blank line, so a message shorter than both gives the
        same bytes as it has. Mail without a blank line is all header block.
        """
        c = self.config
        if not c.byte_ngram or not (c.byte_ngram_header_bytes or c.byte_ngram_body_bytes):
            return np.zeros(0, dtype=np.uint64)
        head = view.raw_prefix.replace(b"\r\n", b"\n")
        end = head.find(b"\n\n")
        header, body = (head, b"") if end < 0 else (head[: end + 1], head[end + 2 :])
        data = header[: c.byte_ngram_header_bytes] + b"\n" + body[: c.byte_ngram_body_bytes]
        if c.byte_ngram_lowercase:
            data = data.lower()
        grams = byte_ngrams(data, c.byte_ngram)
        # Only n-grams of ASCII bytes (sg-features-8): one holding a byte >= 0x80 is a piece of
        # raw 8-bit text, i.e. of a script or legacy charset other than English's, and learned
        # from mail whose ham is nearly all English it says "not English" more than "spam"
        # (issue 14; bench/language_families.py, variant grams_ascii: multilingual ham mean p
        # 0.577 -> 0.560, S1 1-ROCA% 0.0090 -> 0.0088, S2 0.0277 -> 0.0276).
        return grams[(grams & _HIGH_BYTES[c.byte_ngram]) == 0]

    def _assemble(
        self,
        values: Sequence[dict[str, float]],
        grams: Sequence[np.ndarray],
        heur: Sequence[list[float]],
        canonical: bool,
    ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """The CSR rows of a batch, built with whole-batch array operations.

        Each row is [its tokens, its byte n-grams, its non-zero heuristics].
        Doing the hashing, normalising and placing once per batch rather than
        once per message (as this did until sg-features-5) cut row assembly
        from ~0.2 to ~0.05 ms a message: thirty small numpy calls a message
        were a fifth of the scoring budget.

        Columns that collide in the hash space appear twice in a row; every
        product (``X @ w``, SGD's updates, liblinear's dual coordinate steps)
        adds them up, which is what a collision means. (Liblinear's per-row
        step size sums squares entry by entry, so a repeated column changes
        its step, not its optimum: S1 and S2 1-ROCA% were the same with rows
        merged first, in scratch runs.) Merging them (``canonical``) sorts
        every row: 0.08 ms a message, so only single rows whose entries are
        explained one by one pay for it. Also returns the token and n-gram
        columns, in input order.
        """
        c = self.config
        n = len(values)
        nt = np.fromiter((len(v) for v in values), dtype=np.int64, count=n)
        ng = np.fromiter((g.size for g in grams), dtype=np.int64, count=n)
        h = np.asarray(heur, dtype=np.float64).reshape(n, len(HEURISTIC_NAMES)) * c.heuristic_scale
        hrow, hcol = np.nonzero(h)  # row-major: grouped by row
        nh = np.bincount(hrow, minlength=n).astype(np.int64)

        tcols = token_columns(chain.from_iterable(values), c.n_hash, self._columns)
        tvals = np.fromiter(chain.from_iterable(v.values() for v in values), np.float64, tcols.size)
        if c.l2_normalize:
            trow = np.repeat(np.arange(n), nt)
            norms = np.sqrt(np.bincount(trow, weights=tvals * tvals, minlength=n))
            tvals *= (c.token_weight / np.where(norms > 0, norms, 1.0))[trow]
        else:
            tvals *= c.token_weight
        gcols = byte_ngram_columns(np.concatenate(grams) if n else np.zeros(0, np.uint64), c.n_hash)
        gvals = np.repeat(c.byte_ngram_weight / np.sqrt(np.maximum(ng, 1)), ng)

        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(nt + ng + nh, out=indptr[1:])
        cols = np.empty(int(indptr[-1]), dtype=np.int64)
        vals = np.empty(int(indptr[-1]), dtype=np.float32)
        for start, counts, bcols, bvals in (
            (indptr[:-1], nt, tcols, tvals),
            (indptr[:-1] + nt, ng, gcols, gvals),
            (indptr[:-1] + nt + ng, nh, c.n_hash + hcol, h[hrow, hcol]),
        ):
            # position of each entry = its row's block start + its index within the block
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            pos = np.repeat(start, counts) + within
            cols[pos] = bcols
            vals[pos] = bvals
        m = sp.csr_matrix((vals, cols, indptr), shape=(n, c.n_columns))
        if canonical:
            m.sum_duplicates()
        return m, tcols, gcols

    def transform_views(self, views: Sequence[MessageView]) -> sp.csr_matrix:
        """Rows for parsed messages (hash collisions as repeated entries, see ``_assemble``)."""
        return self._rows(views)[0]

    def _rows(self, views: Sequence[MessageView]) -> tuple[sp.csr_matrix, list[dict[str, float]], np.ndarray]:
        values = [self._token_values(self.tokens(v)) for v in views]
        grams = [self.grams(v) for v in views]
        heur = [heuristic_values(v) for v in views]
        m, tcols, _ = self._assemble(values, grams, heur, canonical=False)
        return m, values, tcols

    def transform_with_tokens(
        self, raws: Iterable[bytes]
    ) -> tuple[sp.csr_matrix, list[list[str]], list[np.ndarray]]:
        """Rows plus each message's tokens and their columns (for ``model.evidence``)."""
        m, values, tcols = self._rows([self.parse(r) for r in raws])
        bounds = np.cumsum([len(v) for v in values])[:-1]
        return m, [list(v) for v in values], np.split(tcols, bounds)

    def transform_one(self, view: MessageView) -> tuple[sp.csr_matrix, RowParts]:
        """One row plus what it was built from (for explaining a verdict)."""
        values = self._token_values(self.tokens(view))
        grams = self.grams(view)
        row, tcols, gcols = self._assemble([values], [grams], [heuristic_values(view)], canonical=True)
        return row, RowParts(list(values), grams, tcols, gcols)

    def transform(self, raws: Iterable[bytes]) -> sp.csr_matrix:
        """Rows for raw messages (the function training and serving share)."""
        return self.transform_views([self.parse(r) for r in raws])

    def column_names(self, parts: RowParts, wanted: set[int]) -> dict[int, list[str]]:
        """Human-readable names of the wanted hashed columns (tokens and byte n-grams)."""
        names: dict[int, list[str]] = {}
        if not wanted:
            return names
        want = np.fromiter(wanted, dtype=np.int64)
        for i in np.flatnonzero(np.isin(parts.token_cols, want)).tolist():
            names.setdefault(int(parts.token_cols[i]), []).append(parts.tokens[i])
        n = self.config.byte_ngram
        for i in np.flatnonzero(np.isin(parts.gram_cols, want)).tolist():
            text = int(parts.grams[i]).to_bytes(n, "big").decode("latin-1")
            names.setdefault(int(parts.gram_cols[i]), []).append(f"raw:{text!r}")
        return names
