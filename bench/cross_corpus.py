"""Cross-corpus check: train on one corpus's mail, score another's.

    python bench/cross_corpus.py --data DATA [--pairs S2:S1,S1:S2] [--variants base,...]

Every other benchmark trains and tests on the same source, where the byte
layout of a site's headers is itself a clue. A gateway meets mail from
senders and relays no training corpus saw, so settings are also compared
here: trained on the train half of one peers' split, scored on the test half
of the other (``S2:S1`` = trained on trec07p_dev, tested on SpamAssassin).
Either side of a pair may also name whole corpora under DATA, joined by
``+``: ``spamassassin+csdmc2010:trec07p_dev`` trains on all of one site's
mail and scores all of another's, which is the bundled model's situation at
a new gateway (stage 8 in BENCHMARKS.md). Test messages whose bytes or
Message-ID also occur in the training mail are left out: public corpora
share messages (CSDMC2010 holds 2,334 of SpamAssassin's). Variants are ``bench/ablation.py``'s. Prints a
table and writes bench/results/cross_corpus.json and the cross-corpus
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ablation import base_configs, describe, parse_all, score_variant, table_cells
from bench.common import PEERS, REPO, peer_split, update_section
from spamgate.model.labelled import LabelledMessage
from spamgate.training.corpora import read_corpus

BEGIN, END = "<!-- cross:begin -->", "<!-- cross:end -->"


def source(name: str, half: str, data: Path, peers: Path) -> list[LabelledMessage]:
    """A peers' split's ``half`` ("train"/"test"), or whole corpora under ``data`` joined by ``+``."""
    if (peers / "splits" / f"{name}_{half}.tsv").is_file():
        split = peer_split(name, data, peers)
        return split.train if half == "train" else split.test
    return [m for corpus in name.split("+") for m in read_corpus(data / corpus, "dir")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--peers", type=Path, default=PEERS)
    ap.add_argument("--pairs", default="S2:S1,S1:S2", help="TRAIN_SPLIT:TEST_SPLIT, comma-separated")
    ap.add_argument("--variants", default="base")
    ap.add_argument("--base", default="", help="JSON FeatureConfig/TrainConfig overrides for the baseline")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cross_corpus.json")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "bench/cross_corpus.py", *(argv if argv is not None else sys.argv[1:])])
    base = json.loads(args.base) if args.base else {}
    configs = base_configs(base)
    results: list[dict[str, Any]] = []
    for pair in args.pairs.split(","):
        train_name, test_name = pair.split(":")
        train = source(train_name, "train", args.data, args.peers)
        test = source(test_name, "test", args.data, args.peers)
        tr_views = parse_all([m.raw for m in train], args.jobs)
        te_views = parse_all([m.raw for m in test], args.jobs)
        seen = {hashlib.sha256(m.raw).digest() for m in train}
        seen_ids = {v.message_id for v in tr_views if v.message_id}
        keep = [
            i
            for i, (m, v) in enumerate(zip(test, te_views, strict=True))
            if hashlib.sha256(m.raw).digest() not in seen and not (v.message_id and v.message_id in seen_ids)
        ]
        if len(keep) < len(test):
            print(f"{pair}: {len(test) - len(keep)} test messages also in the training mail, left out")
        test, te_views = [test[i] for i in keep], [te_views[i] for i in keep]
        y_tr = np.array([m.label for m in train])
        y_te = np.array([m.label for m in test])
        for name in args.variants.split(","):
            row = score_variant(name, configs, (tr_views, y_tr), (te_views, y_te), args.jobs)
            results.append({"train": train_name, "test": test_name, **row})
            print(describe(pair, row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "base": base, "results": results}, indent=1) + "\n")
    lines = [
        BEGIN,
        "## Cross-corpus (trained on one site's mail, scored on another's)",
        "",
        "A peers' split name stands for its train half (left of →) or test half (right of →); "
        "corpus names joined by + for all of their mail.",
        "",
        f"Command: `{command}`.",
        "",
        "| trained on → tested on | variant | change | 1-ROCA% | ECE | FPR / catch @balanced "
        "| catch @FPR 0.1% (test) |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['train']} → {r['test']} | {table_cells(r)} |" for r in results),
        END,
    ]
    update_section(args.markdown, BEGIN, END, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
