"""``spamgate retrain``: the site's reports + base corpora → a gated candidate (``training.retrain``).

Exit codes: 0 promoted (or written with ``--no-activate`` and would have
been), 1 not promoted by the gate, 3 held (too many training reports
contradict a confident verdict: possible poisoning), 2 an error, 78 an
unusable ``--public-key`` (``model.exit_codes``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spamgate.model.errors import SpamgateError
from spamgate.model.exit_codes import fail


def add_retrain_arguments(r: argparse.ArgumentParser) -> None:
    """Everything but ``--registry``/``--public-key`` (the lifecycle commands' shared options)."""
    r.add_argument(
        "--corpus", action="append", default=[], help="base corpus (repeatable; layouts as in train)"
    )
    r.add_argument("--feedback", type=Path, help="feedback store (SQLite)")
    r.add_argument(
        "--trusted-reporter",
        action="append",
        default=[],
        metavar="NAME",
        help="a reporter whose reports may be held back for the gate (repeatable)",
    )
    r.add_argument(
        "--trusted-reporters", type=Path, metavar="FILE", help="trusted reporter names, one a line"
    )
    r.add_argument(
        "--holdout",
        type=float,
        default=0.15,
        help="newest fraction of base mail and of trusted reports held back for the gate",
    )
    r.add_argument(
        "--roca-tolerance", type=float, default=0.5, help="relative slack on 1-ROCA%% (default 0.5)"
    )
    r.add_argument(
        "--fpr-tolerance", type=float, default=0.0005, help="absolute slack on FPR at the FPR-0.1%% point"
    )
    r.add_argument(
        "--catch-tolerance",
        type=float,
        default=0.08,
        help="absolute slack on catch at FPR 0.1%% of the held-back mail (default 0.08)",
    )
    r.add_argument(
        "--max-contradicting",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="hold the candidate (exit 3) when more than this share of its training reports contradict "
        "a confident verdict (p<0.05 / p>0.95) of the active or bundled model (default 0.2)",
    )
    r.add_argument(
        "--max-contradicting-per-reporter",
        type=int,
        default=50,  # = GateConfig's default (tests check it): its comment has the evidence
        metavar="N",
        help="hold the candidate (exit 3) when more than N training reports of one untrusted reporter "
        "contradict such a verdict, however many of their reports agree (default 50)",
    )
    r.add_argument(
        "--warm-start",
        action="store_true",
        help="start from the active model's weights (SGD losses only; the exact solvers ignore it)",
    )
    r.add_argument("--no-activate", action="store_true", help="write the candidate but never activate it")
    r.add_argument("--jobs", type=int, default=-1)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_retrain)


def cmd_retrain(args: argparse.Namespace) -> int:
    import shlex

    from spamgate.model.labelled import LabelledMessage, Report
    from spamgate.service.cli.lifecycle_commands import _registry
    from spamgate.training.corpora import CorpusError, read_corpus
    from spamgate.training.reports import read_trusted_reporters
    from spamgate.training.retrain import (
        EXIT_HELD,
        EXIT_NOT_PROMOTED,
        EXIT_PROMOTED,
        GateConfig,
        corpus_summary,
        retrain,
        retrain_recipe,
    )

    try:
        gate = GateConfig(
            roca_tolerance=args.roca_tolerance,
            fpr_tolerance=args.fpr_tolerance,
            holdout=args.holdout,
            max_contradicting=args.max_contradicting,
            max_contradicting_per_reporter=args.max_contradicting_per_reporter,
            catch_tolerance=args.catch_tolerance,
        )
    except ValueError as exc:  # an argument out of range (GateConfig says which): 2, as argparse's own
        return fail("retrain", exc)
    try:
        trusted = set(args.trusted_reporter)
        if args.trusted_reporters:
            try:
                trusted |= read_trusted_reporters(args.trusted_reporters)
            except ValueError as exc:  # read_trusted_reporters' one error: the file cannot be read
                raise CorpusError(str(exc)) from exc
        r = _registry(args)
        active = r.load(r.active()) if r.active() else None
        messages: list[LabelledMessage] = []
        corpora: list[dict[str, Any]] = []
        for c in args.corpus:
            msgs = list(read_corpus(c))
            messages.extend(msgs)
            corpora.append(corpus_summary(Path(c).name, msgs))
        reports: list[Report] = []
        if args.feedback:
            if not args.feedback.is_file():
                raise CorpusError(f"--feedback {args.feedback}: no such feedback store")
            import sqlite3

            from spamgate.service.lifecycle.feedback_store import FeedbackStore

            # A damaged store (truncated, not SQLite, another schema, a report whose message is gone)
            # was a traceback and exit 1, the gate's "not promoted" (adversarial review): now exit 2.
            try:
                store = FeedbackStore(args.feedback)
                try:
                    reports = store.reports(trusted)
                finally:
                    store.close()
            except sqlite3.Error as exc:
                raise CorpusError(f"--feedback {args.feedback}: unusable feedback store: {exc}") from exc
            corpora.append(
                {
                    **corpus_summary(f"feedback:{args.feedback.name}", [x.message for x in reports]),
                    "trusted": sum(x.trusted for x in reports),
                }
            )
        if not messages and not reports:
            raise CorpusError("nothing to train on: give --corpus and/or --feedback")
        # The recipe the model names for a site's own retrain (manifest site_recipe), else its own
        # (training.retrain.retrain_recipe).
        features, train_cfg = retrain_recipe(active)
        args.registry.mkdir(parents=True, exist_ok=True)
        try:
            path, decision = retrain(
                messages,
                active,
                args.registry,
                features,
                train_cfg,
                gate,
                corpora,
                warm_start=args.warm_start,
                n_jobs=args.jobs,
                progress=not args.quiet,
                command=shlex.join(["spamgate", *sys.argv[1:]]),
                reports=reports,
            )
        except SpamgateError:
            raise
        except ValueError as exc:
            # training.retrain says "no mail to judge on" (no spam or no ham held back, none to
            # train on) with a plain ValueError; raising CorpusError there is a follow-up (issue 18.3)
            raise CorpusError(str(exc)) from exc
        if decision["promote"] and not args.no_activate:
            r.activate(path.name)
    except (SpamgateError, OSError) as exc:  # CorpusError, RegistryError, ArtifactError: 2
        return fail("retrain", exc)
    print(json.dumps({"candidate": path.name, **decision}, indent=1))
    if decision.get("held"):
        print(f"HELD (not promoted): {decision['why']}")
        return EXIT_HELD
    print(
        f"{'PROMOTED' if decision['promote'] and not args.no_activate else 'NOT promoted'}: {decision['why']}"
    )
    return EXIT_PROMOTED if decision["promote"] else EXIT_NOT_PROMOTED
