"""Ablation: one change at a time against a baseline, on the peers' splits.

    python bench/ablation.py --data DATA [--splits S2,S1] [--variants base,bytes4,...]

Each variant is the baseline with a few parameters changed (``VARIANTS``).
Messages are parsed once per split and reused by every variant. Prints and
writes bench/results/ablation.json and the ablation section of BENCHMARKS.md.
The comments above choices in model/tokens.py and model/features.py quote
these figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PEERS, REPO, peer_split, random_corpus_split, update_section
from spamgate.model.features import FeatureConfig, FeatureExtractor
from spamgate.model.hashing import byte_ngrams
from spamgate.model.labelled import LabelledMessage
from spamgate.model.manifest import points_from_dicts
from spamgate.model.message import MessageView
from spamgate.model.tokens import TokenConfig
from spamgate.training import metrics
from spamgate.training.corpora import read_corpus
from spamgate.training.fit import TrainConfig, fit

BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"

# The training settings of the SGD era (stages 4-6): the variants that use them name them, so they
# keep their meaning under the SVM default.
AVG_SGD = {"loss": "sgd_log", "average": True}

# name -> (feature overrides, token overrides, train overrides, what it tests)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]] = {
    "base": ({}, {}, {}, "the baseline: current defaults plus --base overrides"),
    "no_heuristics": ({"heuristic_scale": 0.0}, {}, {}, "heuristic columns off"),
    "heur_x3": ({"heuristic_scale": 3.0}, {}, {}, "heuristic columns ×3"),
    "heur_0.3": ({"heuristic_scale": 0.3}, {}, {}, "heuristic columns ×0.3"),
    "heur_0.1": ({"heuristic_scale": 0.1}, {}, {}, "heuristic columns ×0.1"),
    "C30": ({}, {}, {"C": 30.0}, "C = 30"),
    "C300": ({}, {}, {"C": 300.0}, "C = 300"),
    "binary": ({"weighting": "binary"}, {}, {}, "binary instead of log-TF"),
    "no_l2": ({"l2_normalize": False}, {}, {}, "no L2 normalisation of tokens"),
    "case": ({}, {"lowercase": False}, {}, "keep case"),
    "bigrams": ({}, {"word_bigrams": True}, {}, "add word bigrams"),
    "char4": ({}, {"char_ngram": 4}, {}, "add char 4-grams of words"),
    "bytes4": ({"byte_ngram": 4}, {}, {}, "add byte 4-grams of the first 3000 raw bytes"),
    "bytes4_only": ({"byte_ngram": 4, "token_weight": 0.0}, {}, {}, "byte 4-grams + heuristics, no tokens"),
    "bytes4_lc": ({"byte_ngram": 4, "byte_ngram_lowercase": True}, {}, {}, "byte 4-grams, case-folded"),
    "bytes5": ({"byte_ngram": 5}, {}, {}, "byte 5-grams"),
    "bytes3": ({"byte_ngram": 3}, {}, {}, "byte 3-grams"),
    "bits18": ({"n_bits": 18}, {}, {}, "2^18 hash space"),
    "bits22": ({"n_bits": 22}, {}, {}, "2^22 hash space"),
    "grams_w0.7": ({"byte_ngram_weight": 0.7}, {}, {}, "byte n-gram block length 0.7 (tokens 1.0)"),
    "grams_w1.5": ({"byte_ngram_weight": 1.5}, {}, {}, "byte n-gram block length 1.5 (tokens 1.0)"),
    "avg_sgd": ({}, {}, AVG_SGD, "averaged SGD (Polyak-Ruppert)"),
    "avg_C30": ({}, {}, {**AVG_SGD, "C": 30.0}, "averaged SGD, C = 30"),
    "C30_g1.5": ({"byte_ngram_weight": 1.5}, {}, {"C": 30.0}, "C = 30, byte n-gram block 1.5"),
    "avg_C30_g1.5": (
        {"byte_ngram_weight": 1.5},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 1.5",
    ),
    "avg_C100": ({}, {}, {**AVG_SGD, "C": 100.0}, "averaged SGD, C = 100"),
    "avg_C100_g1.5": (
        {"byte_ngram_weight": 1.5},
        {},
        {**AVG_SGD, "C": 100.0},
        "averaged SGD, C = 100, byte n-gram block 1.5",
    ),
    "avg_C30_g2": (
        {"byte_ngram_weight": 2.0},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 2.0",
    ),
    "avg_C30_g3": (
        {"byte_ngram_weight": 3.0},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 3.0",
    ),
    "avg_C100_g2": (
        {"byte_ngram_weight": 2.0},
        {},
        {**AVG_SGD, "C": 100.0},
        "averaged SGD, C = 100, byte n-gram block 2.0",
    ),
    "avg_C30_g4": (
        {"byte_ngram_weight": 4.0},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 4.0",
    ),
    "avg_C10_g3": (
        {"byte_ngram_weight": 3.0},
        {},
        {**AVG_SGD, "C": 10.0},
        "averaged SGD, C = 10, byte n-gram block 3.0",
    ),
    "avg_C30_g3_heur0.3": (
        {"byte_ngram_weight": 3.0, "heuristic_scale": 0.3},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 3.0, heuristics x0.3",
    ),
    "old_defaults": (
        {"byte_ngram_weight": 1.0},
        {},
        {"loss": "sgd_log", "average": False, "C": 10.0},
        "the defaults before stage 4 (plain SGD, C = 10, byte n-gram block 1.0)",
    ),
    "avg_C30_g1": (
        {"byte_ngram_weight": 1.0},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 1.0",
    ),
    "avg_C30_g2_bits22": (
        {"byte_ngram_weight": 2.0, "n_bits": 22},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 2.0, 2^22 columns",
    ),
    "avg_C30_g2_cw": (
        {"byte_ngram_weight": 2.0},
        {},
        {**AVG_SGD, "C": 30.0, "class_weight": "balanced"},
        "averaged SGD, C = 30, byte n-gram block 2.0, balanced class weights",
    ),
    "avg_C30_g2_heur0.3": (
        {"byte_ngram_weight": 2.0, "heuristic_scale": 0.3},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, C = 30, byte n-gram block 2.0, heuristics x0.3",
    ),
    "avg_C300_g1.5": (
        {"byte_ngram_weight": 1.5},
        {},
        {**AVG_SGD, "C": 300.0},
        "averaged SGD, C = 300, byte n-gram block 1.5",
    ),
    # stage 7 (linear SVM, two byte n-gram windows)
    "sgd_avg_C30": (
        {},
        {},
        {**AVG_SGD, "C": 30.0},
        "averaged SGD, log loss, C = 30",
    ),
    "svm_C0.3": ({}, {}, {"C": 0.3}, "SVM C = 0.3"),
    "svm_C3": ({}, {}, {"C": 3.0}, "SVM C = 3"),
    "svm_C10": ({}, {}, {"C": 10.0}, "SVM C = 10"),
    "body700": ({"byte_ngram_body_bytes": 700}, {}, {}, "body window 700 bytes"),
    "body1500": ({"byte_ngram_body_bytes": 1500}, {}, {}, "body window 1500 bytes"),
    "headers2000": ({"byte_ngram_header_bytes": 2000}, {}, {}, "header window 2000 bytes"),
    "headers_only": ({"byte_ngram_body_bytes": 0}, {}, {}, "no body window"),
    "body_only": ({"byte_ngram_header_bytes": 0}, {}, {}, "no header window"),
    "g1": ({"byte_ngram_weight": 1.0}, {}, {}, "byte n-gram block 1.0"),
    "g3": ({"byte_ngram_weight": 3.0}, {}, {}, "byte n-gram block 3.0"),
    "prefix3000": ({}, {}, {}, "one window: the message's first 3000 bytes (sg-features-6)"),
    "sgd_prefix3000": (
        {},
        {},
        {**AVG_SGD, "C": 30.0},
        "the sg-features-6 defaults: averaged SGD, C = 30, one 3000-byte window",
    ),
    # stage 8 (a new site's mail: bench/cross_corpus.py, leave one corpus out)
    "no_grams": ({"byte_ngram_weight": 0.0}, {}, {}, "no byte n-grams (tokens and heuristics only)"),
    "heur_1": ({"heuristic_scale": 1.0}, {}, {}, "heuristic columns ×1"),
    "body_only_heur1": (
        {"byte_ngram_header_bytes": 0, "heuristic_scale": 1.0},
        {},
        {},
        "no header window, heuristic columns ×1",
    ),
    "C1": ({}, {}, {"C": 1.0}, "C = 1"),
    "C100": ({}, {}, {"C": 100.0}, "C = 100"),
    "balanced_cw": ({}, {}, {"class_weight": "balanced"}, "class_weight = balanced"),
    "huber": ({}, {}, {"loss": "modified_huber"}, "SGD, modified Huber loss"),
    "isotonic": ({}, {}, {"calibration": "isotonic"}, "isotonic calibration"),
    "sgd_log": ({}, {}, {"loss": "sgd_log"}, "SGD, log loss"),
    "bytes4_sgd": ({"byte_ngram": 4}, {}, {"loss": "sgd_log"}, "byte 4-grams, SGD log loss"),
    "bytes4_huber": ({"byte_ngram": 4}, {}, {"loss": "modified_huber"}, "byte 4-grams, SGD modified Huber"),
    "bytes4_sgd_C100": (
        {"byte_ngram": 4},
        {},
        {"loss": "sgd_log", "C": 100.0},
        "byte 4-grams, SGD log, C=100",
    ),
}


# Variants that take byte n-grams from sg-features-6's single window (the message's first N bytes,
# headers and body alike) instead of FeatureConfig's two windows: the baseline of stage 7.
PREFIX_WINDOW = {"prefix3000": 3000, "sgd_prefix3000": 3000}


class PrefixWindowExtractor(FeatureExtractor):
    """Rows with sg-features-6's byte n-gram window; everything else as FeatureExtractor."""

    def __init__(self, config: FeatureConfig, prefix_bytes: int) -> None:
        super().__init__(config)
        self.prefix_bytes = prefix_bytes

    def grams(self, view: MessageView) -> np.ndarray:
        head = view.raw_prefix.replace(b"\r\n", b"\n")[: self.prefix_bytes]
        return byte_ngrams(head, self.config.byte_ngram)


def make_configs(name: str, base_f: FeatureConfig, base_t: TrainConfig) -> tuple[FeatureConfig, TrainConfig]:
    f_over, t_over, tr_over, _ = VARIANTS[name]
    tokens = replace(base_f.tokens, **t_over) if t_over else base_f.tokens
    return replace(base_f, tokens=tokens, **f_over), replace(base_t, **tr_over)


def base_configs(base: dict[str, Any]) -> tuple[FeatureConfig, TrainConfig]:
    """The baseline from ``--base`` JSON: ``{"features": {...}, "tokens": {...}, "train": {...}}``."""
    features = FeatureConfig(tokens=TokenConfig(**base.get("tokens", {})), **base.get("features", {}))
    return features, TrainConfig(**base.get("train", {}))


def score_variant(
    name: str,
    base: tuple[FeatureConfig, TrainConfig],
    train: tuple[list[MessageView], np.ndarray],
    test: tuple[list[MessageView], np.ndarray],
    jobs: int,
) -> dict[str, Any]:
    """Fit one variant on ``train``, score ``test``: the figures every ablation table shows."""
    fcfg, tcfg = make_configs(name, *base)
    t = time.perf_counter()
    prefix = PREFIX_WINDOW.get(name, 0)
    res = fit(rows(fcfg, train[0], jobs, prefix), train[1], tcfg)
    p = res.model.calibration.probability(res.model.margin(rows(fcfg, test[0], jobs, prefix)))
    s = metrics.summary(test[1], p, points_from_dicts(res.operating_points))
    bal = next(x for x in s["at_operating_points"] if x["target_fpr"] == 0.001)  # was named "balanced"
    return {
        "variant": name,
        "what": VARIANTS[name][3],
        "one_minus_roca_pct": s["one_minus_roca_pct"],
        "ece": s["ece"],
        "balanced_fpr": bal["fpr"],
        "balanced_catch": bal["catch"],
        "catch_at_fpr_0.1pct": s["catch_at_fpr"]["0.001"],
        "fit_seconds": res.train_seconds,
        "seconds": time.perf_counter() - t,
    }


def describe(label: str, row: dict[str, Any]) -> str:
    """One printed line for a scored variant."""
    return (
        f"{label} {row['variant']:<18} 1-ROCA% {row['one_minus_roca_pct']:.4f}  ECE {row['ece']:.4f}  "
        f"bal FPR {100 * row['balanced_fpr']:.3f}% catch {100 * row['balanced_catch']:.2f}%  "
        f"catch@0.1% {100 * row['catch_at_fpr_0.1pct']:.2f}%  fit {row['fit_seconds']:.1f}s"
    )


def table_cells(row: dict[str, Any]) -> str:
    """The markdown cells every ablation table shares, variant to catch at 0.1% FPR."""
    return (
        f"{row['variant']} | {row['what']} | {row['one_minus_roca_pct']:.4f} | {row['ece']:.4f} | "
        f"{100 * row['balanced_fpr']:.3f}% / {100 * row['balanced_catch']:.2f}% | "
        f"{100 * row['catch_at_fpr_0.1pct']:.2f}%"
    )


def _parse_chunk(raws: list[bytes]) -> list[MessageView]:
    fx = FeatureExtractor()
    return [fx.parse(r) for r in raws]


def _rows_chunk(cfg: FeatureConfig, views: list[MessageView], prefix: int) -> sp.csr_matrix:
    fx = PrefixWindowExtractor(cfg, prefix) if prefix else FeatureExtractor(cfg)
    return fx.transform_views(views)


def parse_all(raws: list[bytes], jobs: int) -> list[MessageView]:
    chunks = [raws[i : i + 500] for i in range(0, len(raws), 500)]
    return [v for part in Parallel(n_jobs=jobs)(delayed(_parse_chunk)(c) for c in chunks) for v in part]


def rows(cfg: FeatureConfig, views: list[MessageView], jobs: int, prefix: int = 0) -> sp.csr_matrix:
    """Feature rows, built in chunks on ``jobs`` processes (``prefix``: see PREFIX_WINDOW)."""
    chunks = [views[i : i + 500] for i in range(0, len(views), 500)]
    parts = Parallel(n_jobs=jobs)(delayed(_rows_chunk)(cfg, c, prefix) for c in chunks)
    return sp.vstack(parts, format="csr")


def extra_training(
    data: Path, corpora: list[str], test: list[LabelledMessage], test_views: list[MessageView], jobs: int
) -> tuple[list[MessageView], np.ndarray]:
    """Whole corpora as extra training mail, minus anything that is also in the test half.

    The same message can sit in two public corpora (forwarded, re-collected);
    training on a copy of a test message would flatter the figures.
    """
    test_ids = {v.message_id for v in test_views if v.message_id}
    test_hashes = {hashlib.sha256(m.raw).digest() for m in test}
    msgs = [m for name in corpora for m in read_corpus(data / name, "dir")]
    msgs = [m for m in msgs if hashlib.sha256(m.raw).digest() not in test_hashes]
    views = parse_all([m.raw for m in msgs], jobs)
    keep = [i for i, v in enumerate(views) if not (v.message_id and v.message_id in test_ids)]
    return [views[i] for i in keep], np.array([msgs[i].label for i in keep])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--peers", type=Path, default=PEERS)
    ap.add_argument("--splits", default="S2,S1", help="peers' splits, or corpora under DATA (seeded 50/50)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--base", default="", help="JSON FeatureConfig/TrainConfig overrides for the baseline")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--extra-train",
        default="",
        help="comma-separated corpora under DATA added to every training half (messages whose "
        "Message-ID or bytes occur in the test half are left out); calibration folds are shuffled",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ablation.json")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "bench/ablation.py", *(argv if argv is not None else sys.argv[1:])])
    base = json.loads(args.base) if args.base else {}
    base_f, base_t = base_configs(base)
    results: list[dict[str, Any]] = []
    for split_name in args.splits.split(","):
        if (args.peers / "splits" / f"{split_name}_train.tsv").is_file():
            split = peer_split(split_name, args.data, args.peers)
        else:  # a corpus under DATA, split as bench/accuracy.py splits it
            split = random_corpus_split(args.data / split_name)
        t0 = time.perf_counter()
        tr_views = parse_all([m.raw for m in split.train], args.jobs)
        te_views = parse_all([m.raw for m in split.test], args.jobs)
        y_tr = np.array([m.label for m in split.train])
        y_te = np.array([m.label for m in split.test])
        if args.extra_train:
            ex_views, ex_y = extra_training(
                args.data, args.extra_train.split(","), split.test, te_views, args.jobs
            )
            tr_views, y_tr = ex_views + tr_views, np.concatenate([ex_y, y_tr])
            base_t = replace(base_t, cv_shuffle=True)
            print(f"{split_name}: +{len(ex_views)} training messages from {args.extra_train}", flush=True)
        print(
            f"{split_name}: parsed {len(tr_views) + len(te_views)} in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        for name in args.variants.split(","):
            row = score_variant(name, (base_f, base_t), (tr_views, y_tr), (te_views, y_te), args.jobs)
            if args.extra_train:
                row["variant"] += f"+{args.extra_train}"
            results.append({"split": split_name, **row})
            print(describe(split_name, row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "base": base, "results": results}, indent=1) + "\n")
    lines = [
        BEGIN,
        "## Ablation (one change at a time against the baseline)",
        "",
        f"Command: `{command}`. Baseline overrides: `{json.dumps(base)}`.",
        "",
        "| split | variant | change | 1-ROCA% | ECE | FPR / catch @balanced | catch @FPR 0.1% (test) "
        "| fit s |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['split']} | {table_cells(r)} | {r['fit_seconds']:.1f} |" for r in results),
        END,
    ]
    update_section(args.markdown, BEGIN, END, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
