"""Raw message → one sparse feature row: hashed tokens + heuristics.

Columns ``[0, 2**n_bits)`` hold hashed token features; the next
``len(HEURISTICS)`` columns hold heuristic values, unhashed, so a rule never
collides with a token and its weight is readable by name.

Hashing is ``model.hashing`` (MurmurHash3, seed 0): stable across processes
and machines, unlike Python's salted ``hash()``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from model.hashing import hashed_rows, token_columns
from model.heuristics import HEURISTIC_NAMES, heuristic_values
from model.limits import ParseLimits
from model.message import MessageView
from model.parse import parse_message
from model.tokens import TokenConfig, message_tokens

# Bump when any change to parsing, tokens, heuristics or hashing would give a
# different row for the same bytes and parameters. An artifact records this
# and is refused by code with a different value.
FEATURE_VERSION = "sg-features-2"

_WEIGHTINGS = ("log", "binary")


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of the feature pipeline (recorded in each artifact).

    n_bits: token hash space is ``2**n_bits`` columns.
    weighting: ``log`` (1 + ln count) or ``binary`` token values.
    l2_normalize: scale the token part of each row to unit length, so long
        messages don't get larger margins just for being long.
    heuristic_scale: multiplier for heuristic columns (they compete with
        L2-normalised token values under one regulariser).
    tokens: token extraction parameters.
    limits: parse limits (they change what is seen, so they are part of it).
    """

    n_bits: int = 20
    weighting: str = "log"
    l2_normalize: bool = True
    heuristic_scale: float = 1.0
    tokens: TokenConfig = field(default_factory=TokenConfig)
    limits: ParseLimits = field(default_factory=ParseLimits)

    def __post_init__(self) -> None:
        if not (10 <= self.n_bits <= 26):
            raise ValueError(f"n_bits must be in 10..26, got {self.n_bits}")
        if self.weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {self.weighting!r}")
        if not (0.0 <= self.heuristic_scale <= 100.0):
            raise ValueError(f"heuristic_scale must be in [0, 100], got {self.heuristic_scale}")

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
        """Inverse of ``to_dict``; unknown keys are an error (a newer artifact)."""
        d = dict(data)
        tokens = TokenConfig(**d.pop("tokens", {}))
        limits = ParseLimits(**d.pop("limits", {}))
        return cls(tokens=tokens, limits=limits, **d)


class FeatureExtractor:
    """Stateless transformer from messages to rows; safe to share across threads."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()

    def parse(self, raw: bytes) -> MessageView:
        return parse_message(raw, self.config.limits)

    def tokens(self, view: MessageView) -> Counter[str]:
        return message_tokens(view, self.config.tokens)

    def _token_values(self, counts: Counter[str]) -> dict[str, float]:
        if self.config.weighting == "binary":
            vals = dict.fromkeys(counts, 1.0)
        else:
            vals = {t: 1.0 + math.log(c) for t, c in counts.items()}
        return vals

    def transform_views(self, views: Sequence[MessageView]) -> sp.csr_matrix:
        """Rows for parsed messages."""
        token_dicts = [self._token_values(self.tokens(v)) for v in views]
        return self._assemble(token_dicts, [heuristic_values(v) for v in views])

    def transform_one(self, view: MessageView) -> tuple[sp.csr_matrix, list[str]]:
        """One row plus the message's token strings (for explaining a verdict)."""
        values = self._token_values(self.tokens(view))
        return self._assemble([values], [heuristic_values(view)]), list(values)

    def transform(self, raws: Iterable[bytes]) -> sp.csr_matrix:
        """Rows for raw messages (the function training and serving share)."""
        return self.transform_views([self.parse(r) for r in raws])

    def _assemble(self, token_dicts: list[dict[str, float]], heur: list[list[float]]) -> sp.csr_matrix:
        n = len(token_dicts)
        tok = hashed_rows(token_dicts, self.config.n_hash)
        data = tok.data.astype(np.float32, copy=False)
        counts = np.diff(tok.indptr)
        if self.config.l2_normalize and data.size:
            # Row norms without a sparse product (diag @ X allocates per column: 4 ms a row at 2^20).
            sq = np.zeros(n, dtype=np.float64)
            np.add.at(sq, np.repeat(np.arange(n), counts), data.astype(np.float64) ** 2)
            norms = np.sqrt(sq)
            norms[norms == 0] = 1.0
            data = (data / np.repeat(norms, counts)).astype(np.float32)
        h = np.asarray(heur, dtype=np.float32).reshape(n, len(HEURISTIC_NAMES)) * np.float32(
            self.config.heuristic_scale
        )
        h_rows, h_cols = np.nonzero(h)
        rows = np.concatenate([np.repeat(np.arange(n), counts), h_rows])
        cols = np.concatenate([tok.indices.astype(np.int64), self.config.n_hash + h_cols])
        vals = np.concatenate([data, h[h_rows, h_cols]])
        out = sp.csr_matrix((vals, (rows, cols)), shape=(n, self.config.n_columns), dtype=np.float32)
        out.sort_indices()
        return out

    def token_columns(self, tokens: Sequence[str]) -> np.ndarray:
        """Column index of each token (the same hash the rows use)."""
        return token_columns(tokens, self.config.n_hash)
