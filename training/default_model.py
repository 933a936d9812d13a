"""Retrain the bundled default model (``make default-model``).

Corpora: the three with full headers (SpamAssassin, trec07p first 25,000,
CSDMC2010). Enron-Spam and Ling-Spam are left out on purpose: they have no
headers, so every header heuristic (MISSING_DATE, RCVD_NO_HOPS…) would fire
on all of their mail and the model would learn "no headers" as a label cue
from their ham/spam ratio instead of from real mail.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from model.bundled import BUNDLED_DIR
from model.features import FeatureConfig
from training.fit import TrainConfig
from training.train import CorpusSpec, train

CORPORA = ("spamassassin", "trec07p_dev", "csdmc2010")
FEATURES = FeatureConfig()
TRAINING = TrainConfig(cv_shuffle=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="folder holding the unpacked corpora")
    ap.add_argument("--out", type=Path, default=BUNDLED_DIR)
    args = ap.parse_args(argv)
    specs = [CorpusSpec(str(args.data / name), "dir") for name in CORPORA]
    missing = [s.path for s in specs if not Path(s.path).is_dir()]
    if missing:
        print(f"missing corpora: {missing} (run `make default-model`, which unpacks them)", file=sys.stderr)
        return 2
    tmp = args.out.with_name(args.out.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    command = "make default-model  # = " + shlex.join(
        ["python", "-m", "training.default_model", *sys.argv[1:]]
    )
    train(specs, tmp, FEATURES, TRAINING, exact=True, command=command)
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    print(f"bundled model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
