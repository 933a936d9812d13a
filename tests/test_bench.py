"""Bookkeeping of the benchmarks (bench/online.py, bench/cross_corpus.py), on generated mail."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.online import figures, judge_in_time_order, median_span_days
from spamgate.model.features import FeatureConfig, FeatureExtractor
from spamgate.training.fit import TrainConfig
from tests.mail import generated_corpus


def test_judged_by_the_model_current_at_arrival() -> None:
    corpus = generated_corpus(160, seed=3)
    X = FeatureExtractor(FeatureConfig(n_bits=14)).transform([raw for _, raw in corpus])
    y = np.array([1 if label == "spam" else 0 for label, _ in corpus])
    cfg = TrainConfig(cv_folds=3)
    batch = judge_in_time_order(X[:100], y[:100], X[100:], y[100:], cfg, every=0)
    online = judge_in_time_order(X[:100], y[:100], X[100:], y[100:], cfg, every=25)
    assert batch[2] == 1 and online[2] == 3  # 60 test messages: blocks of 25, 25, 10
    # the first block is judged by the batch model in both runs, later blocks by refits
    assert np.array_equal(batch[0][:25], online[0][:25]) and np.array_equal(batch[1][:25], online[1][:25])
    assert online[0].shape == online[1].shape == (60,)
    row = figures(y[100:], online[0], online[1])
    assert 0.0 <= row["balanced_fpr"] <= 1.0 and row["one_minus_roca_pct"] < 5.0


def test_block_spans_ignore_missing_dates_and_outliers() -> None:
    days = np.concatenate([np.linspace(0.0, 1.0, 100), np.linspace(1.0, 3.0, 100)])
    days[5] = np.nan
    days[150] = 400.0  # one relay with a wrong clock
    assert abs(median_span_days(days, 100) - 1.35) < 0.01  # spans 0.9 and 1.8
    assert np.isnan(median_span_days(np.full(10, np.nan), 5))


def test_cross_corpus_sources_join_whole_corpora(tmp_path: Path) -> None:
    from bench.cross_corpus import source

    for name, seed in (("site_a", 1), ("site_b", 2)):
        for i, (label, raw) in enumerate(generated_corpus(10, seed=seed)):
            folder = tmp_path / name / label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.eml").write_bytes(raw)
    both = source("site_a+site_b", "train", tmp_path, peers=tmp_path / "no_peers")
    assert len(both) == 20 and sum(m.label for m in both) == 10
    assert len(source("site_b", "test", tmp_path, peers=tmp_path / "no_peers")) == 10


def test_peer_results_reads_only_the_accuracy_table(tmp_path: Path) -> None:
    from bench.common import peer_results

    (tmp_path / "results.md").write_text(
        "# Peer results\n"
        "| split | peer | 1-ROCA% | catch@FPR0.1% |\n|---|---|---|---|\n"
        "| S1 spamassassin | bogofilter | 0.0278 | 92.16% |\n| S1 | Rspamd | 0.6340 | 41.10% |\n"
        "| S2 trec07p | bogofilter | 0.0186 | 96.35% |\n\n## Speed\n\n"
        "| filter | msgs per server CPU-second | catch @FPR 0.1% |\n|---|---|---|\n"
        "| bogofilter (bulk) | 4,425 | 95.37% |\n"
    )
    rows = peer_results(tmp_path)
    assert [(r["split_id"], r["peer"], r["catch@FPR0.1%"]) for r in rows] == [
        ("S1", "bogofilter", "92.16%"),
        ("S1", "Rspamd", "41.10%"),
        ("S2", "bogofilter", "96.35%"),
    ]
