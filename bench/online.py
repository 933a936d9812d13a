"""Retraining in time order (the TREC setting) against one batch fit.

    python bench/online.py --data DATA [--split S2] [--every 0,2500,1000,500]

TREC's spam track scores a filter that learns as mail arrives: each message
is classified, then its true label is fed back. spamgate learns in batches
(``spamgate retrain``, with the users' reports), so this benchmark runs the
batch form of that protocol on a time-ordered split: train on the train half,
judge the next EVERY messages of the test half, add them with their labels,
retrain (the product's full fit: out-of-fold calibration and operating points
included), and go on. ``EVERY = 0`` is the single batch fit that
``bench/accuracy.py`` reports and the peers were scored with.

Each test message is judged by the model that was current when it arrived,
against that model's own balanced threshold; 1-ROCA% and ECE are over all of
them. The days between retrains are, over the blocks of EVERY messages, the
median of each block's span (5th to 95th percentile of arrival, so one
mis-set relay clock does not stretch a block), measured on the newest dated
Received hop: the Date header is the sender's claim and spam forges it.

Prints a table and writes bench/results/online.json and the online section
of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ablation import base_configs, parse_all, rows
from bench.common import PEERS, REPO, peer_split, update_section
from spamgate.model.message import MessageView
from spamgate.training import metrics
from spamgate.training.fit import TrainConfig, fit

BEGIN, END = "<!-- online:begin -->", "<!-- online:end -->"


def arrival_days(views: list[MessageView]) -> np.ndarray:
    """Arrival time of each message in days (NaN where no Received hop carries a date)."""
    out = np.full(len(views), np.nan)
    for i, v in enumerate(views):
        when = next((h.date for h in v.received if h.date is not None), None)
        if when is not None:
            out[i] = when.timestamp() / 86400.0
    return out


def median_span_days(days: np.ndarray, every: int) -> float:
    """Median over consecutive blocks of ``every`` messages of each block's 5-95th percentile span."""
    spans = []
    for a in range(0, len(days) - every + 1, every):
        block = days[a : a + every]
        block = block[~np.isnan(block)]
        if len(block) > 1:
            spans.append(float(np.percentile(block, 95) - np.percentile(block, 5)))
    return float(np.median(spans)) if spans else float("nan")


def judge_in_time_order(
    x_train: sp.csr_matrix,
    y_train: np.ndarray,
    x_test: sp.csr_matrix,
    y_test: np.ndarray,
    cfg: TrainConfig,
    every: int,
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Probabilities and balanced thresholds for the test half, retraining every ``every`` messages.

    Returns (probabilities, threshold each message was judged against, fits, fit seconds).
    """
    n = len(y_test)
    probs = np.zeros(n)
    thresholds = np.zeros(n)
    step = every if every > 0 else n
    fits, seconds = 0, 0.0
    for a in range(0, n, step):
        b = min(a + step, n)
        res = fit(
            sp.vstack([x_train, x_test[:a]], format="csr") if a else x_train,
            np.concatenate([y_train, y_test[:a]]) if a else y_train,
            cfg,
        )
        fits += 1
        seconds += res.train_seconds
        probs[a:b] = res.model.calibration.probability(res.model.margin(x_test[a:b]))
        thresholds[a:b] = next(p["threshold"] for p in res.operating_points if p["target_fpr"] == 0.001)
    return probs, thresholds, fits, seconds


def figures(y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """What the table shows for one cadence."""
    called_spam = probs >= thresholds
    ham, spam = y == 0, y == 1
    at_01 = metrics.rates_at(y, probs, metrics.threshold_for_fpr(y, probs, 0.001))
    return {
        "one_minus_roca_pct": metrics.one_minus_roca_pct(y, probs),
        "ece": metrics.expected_calibration_error(y, probs),
        "balanced_fpr": float(called_spam[ham].mean()),
        "balanced_false_positives": int(called_spam[ham].sum()),
        "balanced_catch": float(called_spam[spam].mean()),
        "catch_at_fpr_0.1%": at_01["catch"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--peers", type=Path, default=PEERS)
    ap.add_argument("--split", default="S2", help="a time-ordered peers' split")
    ap.add_argument("--every", default="0,2500,1000,500", help="retrain every N test messages (0 = never)")
    ap.add_argument("--base", default="", help="JSON FeatureConfig/TrainConfig overrides (bench/ablation.py)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "online.json")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "bench/online.py", *(argv if argv is not None else sys.argv[1:])])
    cadences = [int(e) for e in args.every.split(",")]
    if any(e < 0 for e in cadences):
        ap.error("--every takes counts >= 0")
    base = json.loads(args.base) if args.base else {}
    fcfg, tcfg = base_configs(base)
    split = peer_split(args.split, args.data, args.peers)
    t0 = time.perf_counter()
    tr_views = parse_all([m.raw for m in split.train], args.jobs)
    te_views = parse_all([m.raw for m in split.test], args.jobs)
    x_train, x_test = rows(fcfg, tr_views, args.jobs), rows(fcfg, te_views, args.jobs)
    y_train = np.array([m.label for m in split.train])
    y_test = np.array([m.label for m in split.test])
    days = arrival_days(te_views)
    print(
        f"{args.split}: featurized {len(y_train) + len(y_test)} in {time.perf_counter() - t0:.0f}s",
        flush=True,
    )
    results = []
    for every in cadences:
        probs, thresholds, fits, seconds = judge_in_time_order(x_train, y_train, x_test, y_test, tcfg, every)
        row = {
            "every": every,
            "days_between": median_span_days(days, every) if every else None,
            "fits": fits,
            "fit_seconds": seconds,
            **figures(y_test, probs, thresholds),
        }
        results.append(row)
        print(describe(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "split": args.split, "base": base, "results": results}
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    lines = [
        BEGIN,
        "## Retraining in time order (the TREC setting)",
        "",
        f"Command: `{command}`. Split {args.split} ({split.description}): trained on the train half, "
        "then the test half in arrival order, retrained with each block's true labels before the next "
        "block. Each message is judged by the model current when it arrived, at that model's balanced "
        "threshold. The peers' figures are for one batch fit (the first row).",
        "",
        "| retrain every | days of mail between retrains (median) | fits | 1-ROCA% | ECE "
        "| FPR / catch @balanced | catch @FPR 0.1% | fit s (all fits) |",
        "|---|---|---|---|---|---|---|---|",
        *(table_row(r) for r in results),
        END,
    ]
    update_section(args.markdown, BEGIN, END, "\n".join(lines) + "\n")
    return 0


def describe(row: dict[str, Any]) -> str:
    return (
        f"every {row['every'] or 'never':>5}: 1-ROCA% {row['one_minus_roca_pct']:.4f}  ECE {row['ece']:.4f}  "
        f"balanced FPR {100 * row['balanced_fpr']:.3f}% ({row['balanced_false_positives']}) "
        f"catch {100 * row['balanced_catch']:.2f}%  catch@0.1% {100 * row['catch_at_fpr_0.1%']:.2f}%  "
        f"{row['fits']} fits {row['fit_seconds']:.0f}s"
    )


def table_row(r: dict[str, Any]) -> str:
    every = f"{r['every']:,} messages" if r["every"] else "never (one batch fit)"
    days = f"{r['days_between']:.1f}" if r["days_between"] is not None else "–"
    return (
        f"| {every} | {days} | {r['fits']} | {r['one_minus_roca_pct']:.4f} | {r['ece']:.4f} "
        f"| {100 * r['balanced_fpr']:.3f}% / {100 * r['balanced_catch']:.2f}% "
        f"| {100 * r['catch_at_fpr_0.1%']:.2f}% | {r['fit_seconds']:.0f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
