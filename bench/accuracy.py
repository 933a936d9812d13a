"""Accuracy benchmark: spamgate on the peers' splits and on the other corpora.

    python bench/accuracy.py --data DATA [--splits S1,S2,csdmc2010,...]

DATA is the folder where ../shared/corpora/*.tar.xz are unpacked (``make bench`` does it).
Writes bench/results/accuracy.json, ROC plots bench/results/roc_*.png, and the
accuracy section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PEERS,
    REPO,
    peer_results,
    peer_split,
    random_corpus_split,
    reference_loop_seconds,
    run,
    scoring_rate,
    update_section,
)
from spamgate.model.features import FeatureConfig
from spamgate.training.evaluate import plot_roc
from spamgate.training.fit import TrainConfig

DEFAULT_SPLITS = "S1,S2,csdmc2010,enron_spam,lingspam"
BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"


def _pct(x: float) -> str:
    return f"{100 * x:.3f}%"


def markdown(results: list[dict[str, Any]], peers: list[dict[str, str]], command: str) -> str:
    lines = [
        BEGIN,
        "## Accuracy",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, 2 cores).",
        "Thresholds come from the training half only (out-of-fold), then are applied to the test half.",
        "Scoring speed is followed by the time of a fixed pure-Python loop (3M additions) taken right",
        "after it: this VM's speed drifts by up to 2x, and `bench/speed.py` prints the same loop.",
        "",
        "| split | n test | ROC AUC | 1-ROCA% | ECE | FPR / catch @FPR-1% point "
        "| FPR / catch @FPR-0.1% point | FPR / catch @FPR-0.01% point | catch @FPR 0.1% (test) "
        "| train s | scoring msgs/s/core |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pts = {p["target_fpr"]: p for p in r["at_operating_points"]}
        cells = [
            f"{r['split']} ({r['description']})",
            str(r["n"]),
            f"{r['roc_auc']:.5f}",
            f"{r['one_minus_roca_pct']:.4f}",
            f"{r['ece']:.4f}",
            *(
                f"{_pct(pts[n]['fpr'])} / {_pct(pts[n]['catch'])}"
                for n in (0.01, 0.001, 0.0001)
            ),
            _pct(r["catch_at_fpr"]["0.001"]),
            f"{r['train_seconds_total']:.1f}",
            f"{r['scoring_msgs_per_s']:.0f}"
            + (f" ({r['reference_loop_s']:.3f} s)" if "reference_loop_s" in r else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    earlier = [r for r in results if r.get("command", command) != command]
    if earlier:
        kept = "; ".join(f"{r['split']} (`{r['command']}`)" for r in earlier)
        lines += ["", f"Rows kept from earlier runs: {kept}"]
    if peers:
        lines += [
            "",
            "### Side by side with the peers (same splits; peer figures from ../shared/peers/results.md)",
            "",
            "| split | filter | 1-ROCA% | FPR @default | FNR @default | catch @FPR 0.1% | catch @FPR 1% |",
            "|---|---|---|---|---|---|---|",
        ]
        by_split = {r["split"]: r for r in results}
        for sid in ("S1", "S2"):
            if sid not in by_split:
                continue
            r = by_split[sid]
            bal = next(p for p in r["at_operating_points"] if p["target_fpr"] == 0.001)
            lines.append(
                f"| {sid} | **spamgate** (FPR-0.1% point) | **{r['one_minus_roca_pct']:.4f}** | "
                f"{_pct(bal['fpr'])} | {_pct(bal['fnr'])} | {_pct(r['catch_at_fpr']['0.001'])} | "
                f"{_pct(r['catch_at_fpr']['0.01'])} |"
            )
            for p in (p for p in peers if p["split_id"] == sid):
                lines.append(
                    f"| {sid} | {p['peer']} | {p['1-ROCA%']} | {p['FPR@default']} | {p['FNR@default']} | "
                    f"{p['catch@FPR0.1%']} | {p['catch@FPR1%']} |"
                )
    lines += ["", "Reliability (test half, 10 bins: mean predicted → observed spam rate, count):", ""]
    for r in results:
        cells = [
            f"{b['mean_predicted']:.2f}→{b['observed_spam_rate']:.2f} ({b['count']})"
            for b in r["reliability"]
            if b["count"]
        ]
        lines.append(f"- {r['split']}: " + ", ".join(cells))
    lines += ["", "Highest-scored ham of each test half (p; 1-ROCA% points from its misordered pairs):", ""]
    for r in results:
        cells = [
            f"`{w['source']}` p={w['p']:.3f} ({w['roca_points']:.4f})"
            for w in r.get("worst_ham", [])[:3]
            if "roca_points" in w
        ]
        if cells:
            lines.append(f"- {r['split']}: " + ", ".join(cells))
    lines += ["", "ROC plots: " + ", ".join(f"`bench/results/roc_{r['split']}.png`" for r in results), END]
    return "\n".join(lines) + "\n"


def merge_previous(path: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep earlier results for splits this run did not measure (``--splits`` a subset).

    Each result records the command that produced it, so a table mixing runs stays traceable.
    """
    if not path.is_file():
        return results
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return results
    fresh = {r["split"] for r in results}
    kept = [r for r in old.get("results", []) if r.get("split") not in fresh]
    for r in kept:
        r.setdefault("command", old.get("command", ""))
    return kept + results if kept else results


def peer_curves(split: str, folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """ROC inputs from peers' score files (``make bench-peers`` writes bogofilter's)."""
    out = []
    for f in sorted(folder.glob(f"*_{split}.tsv")):
        rows = [line.split("\t") for line in f.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r[1] not in ("nan", "")]  # messages a peer failed to score
        y = np.array([r[0] == "spam" for r in rows], dtype=int)
        s = np.array([float(r[1]) for r in rows])
        out.append((f.name.split("_")[0], y, s))
    return out


def worst_ham(split: Any, probs: np.ndarray, n: int = 5) -> list[dict[str, Any]]:
    """The highest-scored ham of the test half: where the 1-ROCA% comes from.

    A ham ranked above a share ``s`` of the spam adds ``100 * s / n_ham`` to
    1-ROCA% (its misordered pairs), recorded as ``roca_points``.
    """
    ham = [i for i, m in enumerate(split.test) if m.label == 0]
    top = sorted(ham, key=lambda i: -probs[i])[:n]
    n_spam = sum(1 for m in split.test if m.label == 1)
    spam_p = np.sort(np.array([probs[i] for i, m in enumerate(split.test) if m.label == 1]))
    return [
        {
            "source": split.test[i].source,
            "p": float(probs[i]),
            "spam_below_share": float(np.searchsorted(spam_p, probs[i]) / max(1, n_spam)),
            "roca_points": float(100 * np.searchsorted(spam_p, probs[i]) / max(1, n_spam) / max(1, len(ham))),
        }
        for i in top
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder with the unpacked corpora")
    ap.add_argument("--peers", type=Path, default=PEERS)
    ap.add_argument("--splits", default=DEFAULT_SPLITS)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "accuracy.json")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    command = shlex.join(["python", "bench/accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    fcfg, tcfg = FeatureConfig(), TrainConfig()
    results = []
    for name in args.splits.split(","):
        split = (
            peer_split(name, args.data, args.peers)
            if name.startswith("S")
            else random_corpus_split(args.data / name)
        )
        summary, fit_result, y, probs = run(split, fcfg, tcfg, args.jobs)
        summary["scoring_msgs_per_s"] = scoring_rate(split.test, fcfg, fit_result.model.coef)
        # How fast the VM ran just then: the scoring column is only comparable between runs by it.
        summary["reference_loop_s"] = reference_loop_seconds()
        summary["command"] = command
        summary["feature_config"] = fcfg.to_dict()
        summary["train_config"] = tcfg.to_dict()
        curves = [("spamgate", y, probs), *peer_curves(name, args.out.parent / "peers")]
        plot_roc(curves, args.out.parent / f"roc_{name}.png", f"ROC — {split.description}")
        summary["worst_ham"] = worst_ham(split, probs)
        bal = next(p for p in summary["at_operating_points"] if p["target_fpr"] == 0.001)
        print(
            f"{name:<12} n={summary['n']:<6} AUC {summary['roc_auc']:.5f}  1-ROCA% "
            f"{summary['one_minus_roca_pct']:.4f}  ECE {summary['ece']:.4f}  FPR-0.1% point FPR "
            f"{_pct(bal['fpr'])} catch {_pct(bal['catch'])}  train {summary['train_seconds_total']:.1f}s  "
            f"score {summary['scoring_msgs_per_s']:.0f} msg/s",
            flush=True,
        )
        results.append(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = merge_previous(args.out, results)
    args.out.write_text(json.dumps({"command": command, "results": results}, indent=1) + "\n")
    update_section(args.markdown, BEGIN, END, markdown(results, peer_results(args.peers), command))
    print(f"wrote {args.out} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
