"""Stable token hashing: the same token gets the same column in every process.

MurmurHash3 (32-bit, seed 0, unsigned) from scikit-learn's C implementation,
on the token's UTF-8 bytes, modulo the hash space. Python's ``hash()`` is
salted per process (PYTHONHASHSEED) and must never be used for features.

Hashing one token at a time costs ~270 ns; going through ``FeatureHasher``
costs ~0.6 ms per call in parameter validation, which dominated scoring a
single message (the service's path), so rows are assembled here directly.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sklearn.utils import murmurhash3_32

SEED = 0


def token_columns(tokens: Iterable[str], n_hash: int, memo: dict[str, int] | None = None) -> np.ndarray:
    """Columns of many tokens, in order.

    ``memo`` (token → column, for this ``n_hash``) skips the hash for tokens
    seen before: a dict lookup costs a fifth of a MurmurHash call, and mail
    repeats most of its tokens. It fills up to ``MEMO_SIZE`` entries and then
    only serves what it holds; the columns are the same with or without it.
    """
    if memo is None:
        return np.fromiter((_hash(t) % n_hash for t in tokens), dtype=np.int64)
    out: list[int] = []
    get = memo.get
    room = len(memo) < MEMO_SIZE
    for t in tokens:
        col = get(t)
        if col is None:
            col = _hash(t) % n_hash
            if room and len(t) <= MEMO_MAX_CHARS:
                memo[t] = col
        out.append(col)
    return np.array(out, dtype=np.int64)


def _hash(token: str) -> int:
    """MurmurHash3 of the token's UTF-8 bytes; a lone surrogate (which the strict encoder inside
    ``murmurhash3_32`` refuses) is hashed as its surrogatepass bytes instead of raising.

    ``model.charsets`` already replaces lone surrogates where text is decoded; this keeps any other
    route (an attack review found six: encoded words, addresses, Message-IDs, filenames, URLs in
    UTF-7 text) from turning one message into an unscored one.
    """
    try:
        return int(murmurhash3_32(token, SEED, True))
    except UnicodeEncodeError:
        return int(murmurhash3_32(token.encode("utf-8", "surrogatepass"), SEED, True))


# ~200,000 tokens at ~120 bytes each: ~25 MB a process, enough for the tokens a site sees every day.
MEMO_SIZE = 200_000
# Longer tokens are hashed every time, never kept: the memo's size is counted in entries, and tokens
# built from header values the sender writes ("ct:" + a content type, "rh:" + a HELO) have no length
# limit of their own: 300 messages of 24 KB content types grew a process by 137 MB (attack review).
MEMO_MAX_CHARS = 256


# splitmix64 finaliser constants: a full-avalanche mix of the packed n-gram, vectorised.
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_SALT = np.uint64(0x9E3779B97F4A7C15)  # keeps byte n-grams off the token hash sequence


def byte_ngrams(data: bytes, n: int) -> np.ndarray:
    """Distinct byte n-grams of ``data`` packed big-endian into uint64 (n <= 8)."""
    a = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    m = len(a) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    x = np.zeros(m, dtype=np.uint64)
    for k in range(n):
        x = (x << np.uint64(8)) | a[k : k + m]
    # sort + adjacent compare: 12x faster than np.unique's hash path for ~3,000 grams.
    x.sort()
    return x[np.concatenate(([True], x[1:] != x[:-1]))]


def byte_ngram_columns(grams: np.ndarray, n_hash: int) -> np.ndarray:
    """Columns of packed byte n-grams (vectorised; ~50x faster than hashing strings)."""
    with np.errstate(over="ignore"):
        x = grams ^ _SALT
        x ^= x >> _S33
        x *= _M1
        x ^= x >> _S33
        x *= _M2
        x ^= x >> _S33
    if n_hash & (n_hash - 1) == 0:
        x &= np.uint64(n_hash - 1)  # the same as % for a power of two, without a division per gram
    else:
        x %= np.uint64(n_hash)
    return x.astype(np.int64)
