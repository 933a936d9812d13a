"""Stable token hashing: the same token gets the same column in every process.

MurmurHash3 (32-bit, seed 0, unsigned) from scikit-learn's C implementation,
on the token's UTF-8 bytes, modulo the hash space. Python's ``hash()`` is
salted per process (PYTHONHASHSEED) and must never be used for features.

Hashing one token at a time costs ~270 ns; going through ``FeatureHasher``
costs ~0.6 ms per call in parameter validation, which dominated scoring a
single message (the service's path), so rows are assembled here directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.utils import murmurhash3_32

SEED = 0


def token_column(token: str, n_hash: int) -> int:
    """Column of one token in a space of ``n_hash`` columns."""
    return int(murmurhash3_32(token, SEED, True)) % n_hash


def token_columns(tokens: Iterable[str], n_hash: int) -> np.ndarray:
    """Columns of many tokens, in order."""
    return np.fromiter((murmurhash3_32(t, SEED, True) % n_hash for t in tokens), dtype=np.int64)


def hashed_rows(rows: Sequence[dict[str, float]], n_hash: int) -> sp.csr_matrix:
    """CSR matrix (len(rows) × n_hash) of token values; colliding tokens add up."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for i, row in enumerate(rows):
        cols.append(token_columns(row.keys(), n_hash))
        vals.append(np.fromiter(row.values(), dtype=np.float32, count=len(row)))
        indptr[i + 1] = indptr[i] + len(row)
    m = sp.csr_matrix(
        (
            np.concatenate(vals) if vals else np.zeros(0, np.float32),
            np.concatenate(cols) if cols else np.zeros(0, np.int64),
            indptr,
        ),
        shape=(len(rows), n_hash),
    )
    m.sum_duplicates()
    return m
