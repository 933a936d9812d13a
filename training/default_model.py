"""Retrain the bundled default model (``make default-model``).

Corpora: the three with full headers (SpamAssassin, trec07p first 25,000,
CSDMC2010) and Enron-Spam. The bundled model's job is a site none of its
corpora came from, so the corpora were chosen on leave-one-site-out runs
(BENCHMARKS.md, stage 8: trained on SpamAssassin + CSDMC2010, scored on
trec07p, and the reverse; those are two sites, CSDMC2010 shares 2,334
messages with SpamAssassin). Adding Enron-Spam (15,910 business mails,
14,584 spam) cut 1-ROCA% at the new site from 5.24 to 3.05 and from 4.24 to 2.05, and
the false-positive rate at the balanced point on trec07p from 2.49% to
0.03%: the header corpora's ham is mostly mailing lists, and a site's own
person-to-person mail looked like nothing the model knew. (The thresholds
still come from the training sites, so at a new site they can also be too
cautious: on SpamAssassin's mail the balanced point caught 7% of spam
before and 0.1% after, while 51% was caught at 0.1% FPR. Retraining on the
site's mail is the remedy; see the README.)
Enron-Spam has no headers, so the header heuristics (MISSING_DATE,
RCVD_NO_HOPS…) fire on all of it and learn its ham share (52%) as a cue for
"no headers"; mail at a gateway always has headers, and the new-site
figures above include that effect. Ling-Spam (one academic list, 16% spam,
no headers) stays out: added too, it moved 1-ROCA% only a little (2.97,
1.79) and cut catch at 0.1% FPR on trec07p from 44% to 30%.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from spamgate.model import atomic
from spamgate.model.bundled import BUNDLED_DIR
from spamgate.model.features import FeatureConfig
from spamgate.training.fit import TrainConfig
from spamgate.training.train import CorpusSpec, train

CORPORA = ("spamassassin", "trec07p_dev", "csdmc2010", "enron_spam")
# The bundled model's recipe: FeatureConfig()'s and TrainConfig()'s defaults (chosen within a site,
# S1 and S2). A day-0 recipe chosen on left-out sites ranks them better and was shipped for one build,
# then taken back (BENCHMARKS.md, "A day-0 recipe"): no hn:/ct: tokens, C 0.3, n-gram block 1.0,
# heuristics 0.5 (bench/day0_variants.py variant nhc_C0.3_gw1_h0.5) took 1-ROCA% at the left-out site
# from 2.97 to 2.00 on trec07p and from 15.7 to 10.5 on Enron-Spam, but its probabilities do not travel
# between sites: each site's FPR-1% threshold was 0.021 / 0.84 / 0.14 / 0.98 (csdmc2010, Enron-Spam,
# SpamAssassin, trec07p) against 0.073 / 0.971 / 0.151 / 0.971 with the defaults, so trec07p as the new
# site, its thresholds from the other three, had 6.9% of its ham tagged (python bench/new_site.py
# --data DATA with that recipe) against 0.8%, and the hand-written multilingual ham with headers 4 of
# 80 against 1. A threshold stated as an FPR has to hold at the next site first.
FEATURES = FeatureConfig()
TRAINING = TrainConfig(cv_shuffle=True)
# The recipe `spamgate retrain` fits when it starts from the bundled model (manifest site_recipe;
# training.retrain.retrain_recipe): the defaults, which rank a site's own mail best (a day-0 recipe
# costs within a site: S1 1-ROCA% 0.0087 -> 0.0514, S2 0.0277 -> 0.0406).
SITE_FEATURES = FeatureConfig()
SITE_TRAINING = TrainConfig(cv_shuffle=True)


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
        ["python", "-m", "spamgate.training.default_model", *sys.argv[1:]]
    )
    # new_site: the recipe is also fitted leave one corpus out, and the thresholds a new site's
    # policy resolves against are the highest that held at every left-out site (training.new_site).
    train(
        specs,
        tmp,
        FEATURES,
        TRAINING,
        exact=True,
        command=command,
        new_site=True,
        site_recipe=(SITE_FEATURES, SITE_TRAINING),
    )
    if args.out.exists():
        shutil.rmtree(args.out)
    atomic.commit_dir(tmp, args.out)
    print(f"bundled model written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
