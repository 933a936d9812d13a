"""bench/new_site.py's bookkeeping, on generated mail: cache, token columns, day-0 actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.new_site import (
    _balanced_sample,
    actions_for,
    day0,
    default_thresholds,
    load_site,
    token_cols,
    token_counts,
)
from spamgate.model.features import FeatureConfig, FeatureExtractor
from spamgate.model.manifest import OperatingPoint
from spamgate.service.policy.settings import Action
from tests.conftest import write_corpus
from tests.mail import generated_corpus, make


def test_token_columns_read_off_rows_match_the_scorer() -> None:
    cfg = FeatureConfig(n_bits=14)
    fx = FeatureExtractor(cfg)
    raws = [raw for _, raw in generated_corpus(40, seed=4)]
    raws += [make(body=""), b"\x01\x02\x03\x04\x05\x06", b""]  # few or no tokens, no n-grams
    X = fx.transform(raws)
    counts = token_counts(X, cfg)
    for i, raw in enumerate(raws):
        _, parts = fx.transform_one(fx.parse(raw))
        cols = X.indices[X.indptr[i] : X.indptr[i] + counts[i]]
        assert np.array_equal(np.sort(cols), np.sort(parts.token_cols))


def test_featurised_site_is_cached_and_reused(tmp_path: Path) -> None:
    cfg = FeatureConfig(n_bits=14)
    write_corpus(tmp_path / "site", n=30, seed=2)
    cache = tmp_path / "cache"
    first = load_site(tmp_path, "site", cfg, cache, jobs=1)
    assert len(list(cache.glob("site-*.npz"))) == 1
    again = load_site(tmp_path, "site", cfg, cache, jobs=1)
    assert (first.data.X != again.data.X).nnz == 0
    assert again.data.digests == first.data.digests and again.paths == first.paths
    assert np.array_equal(token_cols(again, 3), token_cols(first, 3))
    # A changed corpus is featurised again.
    (tmp_path / "site" / "ham" / "extra").write_bytes(generated_corpus(2, seed=9)[0][1])
    assert len(load_site(tmp_path, "site", cfg, cache, jobs=1).data.y) == 31


def test_day0_actions_follow_the_default_policy_and_cap_unfamiliar_mail() -> None:
    points = [
        OperatingPoint(f"fpr_{f:g}", target_fpr=f, threshold=t, fpr=f, catch=0.5)
        for f, t in ((0.01, 0.5), (0.001, 0.9), (0.0001, 0.99))
    ]
    resolved = default_thresholds(points)
    assert [(a, t) for a, t, _ in resolved] == [
        (Action.REJECT, 0.99),
        (Action.REROUTE, 0.9),
        (Action.TAG, 0.5),
    ]
    probs = np.array([0.1, 0.6, 0.95, 0.995, 0.995])
    unfamiliar = np.array([False, False, False, False, True])
    acts = actions_for(probs, unfamiliar, resolved)
    assert acts.tolist() == [Action.DELIVER, Action.TAG, Action.REROUTE, Action.REJECT, Action.TAG]
    y = np.array([0, 0, 0, 1, 0])
    fig = day0(y, probs, acts, unfamiliar)
    assert (fig["n_ham"], fig["ham_delivered"], fig["ham_tagged"], fig["ham_rerouted_or_worse"]) == (
        4,
        1,
        2,
        1,
    )
    assert fig["spam_caught"] == 1 and fig["ham_unfamiliar"] == 1


def test_sample_takes_up_to_half_of_each_class() -> None:
    y = np.r_[np.zeros(5000), np.ones(300)].astype(int)
    idx = _balanced_sample(y, 2000, seed=0)
    assert len(idx) == 2000 and int(y[idx].sum()) == 300
    assert np.array_equal(idx, _balanced_sample(y, 2000, seed=0))
    assert len(_balanced_sample(y[:100], 2000, seed=0)) == 100


def test_header_break_added_only_where_headers_run_into_the_body() -> None:
    from bench.new_site import with_header_break

    assert with_header_break(b"Subject: a\r\nfyi .\r\nmore\r\n") == b"Subject: a\r\n\r\nfyi .\r\nmore\r\n"
    assert with_header_break(b"Subject: a\n  folded\nbody\n") == b"Subject: a\n  folded\n\nbody\n"
    assert with_header_break(b"Subject: a\n\nbody\n") is None
    assert with_header_break(b"no header at all\n") is None


def test_day0_reports_calibration_at_the_site() -> None:
    """ECE and calibration in the large: a site whose mail the probabilities overstate says so."""
    y = np.array([0, 0, 0, 0, 1, 1])
    acts = np.full(6, Action.DELIVER)
    honest = day0(y, np.array([0.05, 0.05, 0.05, 0.05, 0.95, 0.95]), acts, np.zeros(0, bool))
    assert honest["ece"] == pytest.approx(0.05) and honest["spam_share"] == pytest.approx(1 / 3)
    overstated = day0(y, np.array([0.75, 0.75, 0.75, 0.75, 0.95, 0.95]), acts, np.zeros(0, bool))
    assert overstated["ece"] == pytest.approx((4 * 0.75 + 2 * 0.05) / 6)
    assert overstated["mean_p"] == pytest.approx((4 * 0.75 + 2 * 0.95) / 6)
    assert sum(r["count"] for r in overstated["reliability"]) == 6
