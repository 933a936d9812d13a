"""``spamgate train | evaluate | datasets`` — argument parsing only; work is in the modules."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from spamgate.model.errors import SpamgateError
from spamgate.model.exit_codes import FAILURE, fail
from spamgate.model.features import FeatureConfig
from spamgate.model.limits import ParseLimits
from spamgate.model.tokens import TokenConfig
from spamgate.training.corpora import FORMATS
from spamgate.training.fit import LOSSES, TrainConfig
from spamgate.training.train import CorpusSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOG = REPO_ROOT / "datasets" / "catalog.toml"


def default_data_dir() -> Path:
    """Where fetched corpora live: ``$SPAMGATE_DATA_DIR`` or ``./data`` (git-ignored)."""
    return Path(os.environ.get("SPAMGATE_DATA_DIR", "data"))


def _corpus_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--corpus",
        action="append",
        required=required,
        metavar="PATH",
        help="corpus folder, archive, TREC index or label file (repeatable)",
    )
    p.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), help="corpus layout (default: guess)"
    )
    p.add_argument("--label", choices=("spam", "ham"), help="label for mbox/maildir corpora")
    p.add_argument("--root", help="folder that relative paths in a label file are relative to")


def add_parsers(sub: Any) -> None:
    t = sub.add_parser("train", help="train a model and write a new artifact version")
    _corpus_args(t)
    t.add_argument(
        "--out", required=True, type=Path, help="model registry folder; the version is a subfolder"
    )
    t.add_argument("--exact", action="store_true", help="write the artifact to --out itself, not a subfolder")
    t.add_argument(
        "--n-bits", type=int, default=FeatureConfig.n_bits, help="token hash space 2**N (default %(default)s)"
    )
    t.add_argument(
        "--C", type=float, default=TrainConfig.C, help="inverse regularisation (default %(default)s)"
    )
    t.add_argument("--loss", choices=LOSSES, default=TrainConfig.loss)
    t.add_argument("--calibration", choices=("platt", "isotonic"), default=TrainConfig.calibration)
    t.add_argument("--class-weight", choices=("none", "balanced"), default="none")
    t.add_argument("--word-bigrams", action="store_true", help="add word-pair tokens")
    t.add_argument(
        "--char-ngram", type=int, default=TokenConfig.char_ngram, help="char n-gram length, 0 = off"
    )
    t.add_argument("--max-bytes", type=int, default=ParseLimits.max_bytes, help="bytes of a message scanned")
    t.add_argument("--jobs", type=int, default=-1, help="parallel featurisation workers (-1: all cores)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="measure a model on labelled mail")
    _corpus_args(e)
    e.add_argument("--model", type=Path, help="artifact folder (default: the bundled model)")
    e.add_argument("--roc", type=Path, help="write a ROC curve PNG here")
    e.add_argument("--json", action="store_true", help="print the full report as JSON")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("datasets", help="list the public corpora catalogue and which are present locally")
    d.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where corpora live (default $SPAMGATE_DATA_DIR or ./data)",
    )
    d.add_argument("--catalog", type=Path, default=CATALOG)
    d.set_defaults(func=cmd_datasets)


def _specs(args: argparse.Namespace) -> list[CorpusSpec]:
    return [CorpusSpec(c, args.format, args.label, args.root) for c in args.corpus]


def cmd_train(args: argparse.Namespace) -> int:
    from spamgate.training.train import train

    try:
        fc = FeatureConfig(
            n_bits=args.n_bits,
            tokens=TokenConfig(word_bigrams=args.word_bigrams, char_ngram=args.char_ngram),
            limits=ParseLimits(max_bytes=args.max_bytes),
        )
        tc = TrainConfig(
            loss=args.loss,
            C=args.C,
            calibration=args.calibration,
            class_weight=None if args.class_weight == "none" else args.class_weight,
        )
    except ValueError as exc:  # an argument out of range (the config says which): 2, as argparse's own
        return fail("train", exc)
    try:
        path = train(
            _specs(args), args.out, fc, tc, exact=args.exact, n_jobs=args.jobs, progress=not args.quiet
        )
    except (SpamgateError, OSError) as exc:  # CorpusError, ArtifactError: 2
        return fail("train", exc)
    manifest = json.loads((path / "manifest.json").read_text())
    print(f"wrote {path}")
    print(
        f"version {manifest['version']}: {manifest['training']['messages']} messages, "
        f"fit {manifest['training']['train_seconds']} s"
    )
    for p in manifest["operating_points"]:
        print(
            f"  {p['name']:<11} FPR<={p['target_fpr'] * 100:.2f}%  threshold {p['threshold']:.6f}  "
            f"validation catch {p['catch'] * 100:.2f}%"
        )
    for p in manifest.get("new_site_operating_points", []):
        print(
            f"  new site {p['name']:<11} threshold {p['threshold']:.6f} (set by {p['set_by']}"
            f"{', extrapolated' if p['extrapolated'] else ''}): worst site FPR {p['fpr'] * 100:.3f}%, "
            f"catch {p['catch'] * 100:.2f}%"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spamgate.model.artifact import load_artifact
    from spamgate.model.bundled import bundled_model_path
    from spamgate.training.evaluate import evaluate, format_report, plot_roc

    try:
        artifact = load_artifact(args.model or bundled_model_path())
        from itertools import chain

        report = evaluate(artifact, chain.from_iterable(s.read() for s in _specs(args)))
    except (SpamgateError, OSError) as exc:  # CorpusError, ArtifactError: 2
        return fail("evaluate", exc)
    y, p = report.pop("_scores")
    if args.roc:
        plot_roc([(f"spamgate {artifact.version}", y, p)], args.roc, "ROC")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        if args.roc:
            print(f"ROC curve: {args.roc}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    try:
        catalog = tomllib.loads(args.catalog.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"spamgate datasets: cannot read {args.catalog}: {exc}", file=sys.stderr)
        return FAILURE
    data = args.data_dir or default_data_dir()
    print(f"data dir: {data}")
    for name, entry in catalog.get("corpus", {}).items():
        candidates = [data / name, *(data / f for f in entry.get("local_names", []))]
        found = next((c for c in candidates if c.exists()), None)
        status = f"present ({found})" if found else "missing"
        print(f"{name:<16} {status}")
        print(
            f"    {entry.get('title', '')}: {entry.get('messages', '?')} messages, {entry.get('format', '?')}"
        )
        print(f"    get: {entry.get('url', '?')}")
    return 0
