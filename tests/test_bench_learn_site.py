"""bench/learn_site.py: the site split and the targets line (the fits are the product's, tested elsewhere)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.learn_site import site_split, targets
from spamgate.training.featurize import Featurized


def _rows(n: int, order: list[float | None], digests: list[str]) -> Featurized:
    return Featurized(
        X=sp.csr_matrix(np.eye(n, dtype=np.float32)),
        y=np.array([i % 2 for i in range(n)], dtype=np.int8),
        sources=[f"m{i}" for i in range(n)],
        order=order,
        message_ids=[None] * n,
        digests=digests,
    )


def test_site_split_drops_base_mail_and_keeps_time_order() -> None:
    site = _rows(6, [6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [f"d{i}" for i in range(6)])
    base = _rows(1, [0.0], ["d5"])  # the site's oldest message is base mail: not new at the site
    stream, test, how = site_split(site, base)
    assert "time" in how
    assert stream.digests == ["d4", "d3"] and test.digests == ["d2", "d1", "d0"]
    undated = _rows(6, [None] * 6, [f"d{i}" for i in range(6)])
    s1, t1, how = site_split(undated, base)
    s2, _, _ = site_split(undated, base)
    assert "random" in how and s1.digests == s2.digests  # seeded
    assert sorted(s1.digests + t1.digests) == [f"d{i}" for i in range(5)]


def test_targets_say_met_or_not() -> None:
    row = {"one_minus_roca_pct": 0.1, "fpr_at_threshold": 0.002, "false_positives": 3, "test_ham": 1500}
    lines = targets({"learn": {"1000": row, "all": {"one_minus_roca_pct": 0.04}}})
    assert "2.50x" in lines[0] and "NOT met" in lines[0]
    assert "3 of 1500" in lines[1] and "NOT met" in lines[1]
    lines = targets(
        {"learn": {"1000": {**row, "fpr_at_threshold": 0.0005}, "all": {"one_minus_roca_pct": 0.06}}}
    )
    assert "(target <= 2x: met)" in lines[0] and "(target <= 0.1%: met)" in lines[1]
