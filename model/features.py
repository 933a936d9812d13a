"""Raw message → one sparse feature row: hashed tokens + heuristics.

Columns ``[0, 2**n_bits)`` hold hashed token features; the next
``len(HEURISTICS)`` columns hold heuristic values, unhashed, so a rule never
collides with a token and its weight is readable by name.

Hashing uses scikit-learn's ``FeatureHasher`` (MurmurHash3, seed 0): stable
across processes and machines, unlike Python's salted ``hash()``, and the
per-token loop runs in Cython.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher

from model.heuristics import HEURISTIC_NAMES, heuristic_values
from model.limits import ParseLimits
from model.message import MessageView
from model.parse import parse_message
from model.tokens import TokenConfig, message_tokens

# Bump when any change to parsing, tokens, heuristics or hashing would give a
# different row for the same bytes and parameters. An artifact records this
# and is refused by code with a different value.
FEATURE_VERSION = "sg-features-1"

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
        self._hasher = FeatureHasher(
            n_features=self.config.n_hash, input_type="dict", alternate_sign=False, dtype=np.float32
        )

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
        tok = self._hasher.transform(token_dicts).tocsr()
        tok.sum_duplicates()
        if self.config.l2_normalize:
            norms = np.sqrt(np.asarray(tok.multiply(tok).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            tok = sp.csr_matrix(sp.diags((1.0 / norms).astype(np.float32)) @ tok)
        h = sp.csr_matrix(np.asarray(heur, dtype=np.float32).reshape(len(heur), len(HEURISTIC_NAMES)))
        h = h * np.float32(self.config.heuristic_scale)
        return sp.hstack([tok, h], format="csr", dtype=np.float32)

    def token_columns(self, tokens: Sequence[str]) -> np.ndarray:
        """Column index of each token, via the same hasher the rows use."""
        if not tokens:
            return np.zeros(0, dtype=np.int64)
        m = self._hasher.transform([{t: 1.0} for t in tokens]).tocsr()
        return np.asarray(m.indices, dtype=np.int64)
