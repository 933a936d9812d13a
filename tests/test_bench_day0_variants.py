"""bench/day0_variants.py without the corpora: the variant table, and rows rebuilt from parts.

The bench's figures mean something only if "base" is the old default recipe and the variants that
change nothing but FeatureConfig fields score the rows the service computes; both are checked here
on the hand-written multilingual set (in the repository, no shared corpora needed).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import day0_variants as d0
from spamgate.model.features import FeatureExtractor


def test_variants_are_offsets_from_the_old_defaults() -> None:
    assert d0.BASE_FEATURES.byte_ngram_weight == 2.0
    assert d0.BASE_FEATURES.heuristic_scale == 0.1
    assert d0.BASE_TRAINING.C == 1.0 and d0.BASE_TRAINING.loss == "svm"
    desc, base = d0.VARIANTS["base"]
    assert base == d0.Settings() and base.changes() == {}
    assert d0.VARIANTS["C0.1_gw1_h0.3"][1].changes() == {"C": 0.1, "gram_weight": 1.0, "heuristic_scale": 0.3}
    for name, (desc, s) in d0.VARIANTS.items():
        assert desc and isinstance(s, d0.Settings), name
        s.feature_config()
        s.train_config()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"C": 0.0},
        {"gram_weight": -1.0},
        {"header_window": "received"},
        {"weights": "balanced"},
        {"drop_heuristics": ("NO_SUCH_RULE",)},
        {"header_mult": 0.0, "body_mult": 0.0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        d0.Settings(**kwargs)  # type: ignore[arg-type]


def test_rebuilt_rows_equal_the_served_rows() -> None:
    parts = d0.multilingual_parts()
    raws = [(d0.MULTI_SET / src).read_bytes() for src in parts.sources]
    assert (parts.y == 0).sum() == 80 and (parts.y == 1).sum() == 24
    served_variants = [n for n, (_, s) in d0.VARIANTS.items() if s.served_rows]
    # nhc_*: the token families TokenConfig leaves out (the bundled recipe, training.default_model)
    assert {"base", "C0.1", "C0.1_gw1_h0.3", "no_hn_ct", "nhc_C0.3_gw1_h0.5"} <= set(served_variants)
    for name in served_variants:
        s = d0.VARIANTS[name][1]
        served = FeatureExtractor(s.feature_config()).transform(raws)
        assert d0.rows_differ(d0.build_rows(parts, s), served) == [], name


def test_reweighted_rows_keep_unit_token_and_gram_blocks() -> None:
    """Dropping tokens or a window renormalises what is left: |tokens| = 1, |grams| = gram_weight."""
    parts = d0.multilingual_parts()
    base = d0.build_rows(parts, d0.Settings())
    heur_sq = ((parts.arrays["heur"].astype(np.float64) * 0.1) ** 2).sum(axis=1)
    for s in (
        d0.Settings(drop_families=("hn", "ct")),
        d0.Settings(header_mult=0.0),
        d0.Settings(header_mult=0.5),
        d0.Settings(body_mult=0.5),
        d0.Settings(header_window="sender"),
        d0.Settings(header_window="no_received"),
    ):
        X = d0.build_rows(parts, s)
        assert X.nnz != base.nnz or not np.allclose(X.data, base.data), s
        row_sq = np.bincount(
            np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), weights=X.data.astype(np.float64) ** 2
        )
        np.testing.assert_allclose(row_sq, 1.0 + 2.0**2 + heur_sq, rtol=1e-5, err_msg=str(s))
