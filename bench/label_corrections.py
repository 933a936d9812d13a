"""The peers' figures with and without the committed label corrections (issue 14).

    python bench/label_corrections.py --write-splits OUTDIR
    cd DATA && ../shared/peers/run_all.sh ../shared/peers/splits/S1_train.tsv \\
        ../shared/peers/splits/S1_test.tsv ORIG/S1 bogofilter spamassassin spamgate
    cd DATA && ../shared/peers/run_all.sh OUTDIR/S1_train.tsv OUTDIR/S1_test.tsv CORR/S1 bogofilter ...
    python bench/label_corrections.py --compare S1=ORIG/S1,CORR/S1 S2=ORIG/S2,CORR/S2

``--write-splits`` writes the peers' split files (``shared/peers/splits/S*_{train,test}.tsv``)
with ``datasets/label_corrections.toml`` applied to both halves: every filter is then trained on
the corrected train half and scored on the corrected test half by the same ``run_*.sh``, so the
list reaches every filter alike (the filters run outside Python, hence two steps).

``--compare`` reads each ``PEER.tsv`` (``label<TAB>score<TAB>path``) found in both folders of a
split and reports, per filter: the original run with the original labels; the same run with the
test labels corrected (isolates the labels' effect from retraining's); and the corrected run.
Figures are computed as ``shared/peers/metrics.py`` does (sklearn ROC, ties as one step, catch at
FPR 0.1% conservative, unscored messages left out and counted), at the threshold in each run's
``PEER.tsv.meta.json``. Writes bench/results/label_corrections.json and .md (the BENCHMARKS.md
section; ``--markdown BENCHMARKS.md`` replaces it there between its markers).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PEERS, REPO, update_section
from spamgate.training import metrics
from spamgate.training.label_corrections import (
    DEFAULT_LIST,
    LabelCorrection,
    LabelCorrectionsError,
    load,
    relabel,
)

BEGIN, END = "<!-- label-corrections:begin -->", "<!-- label-corrections:end -->"
NAMES = {
    "bogofilter": "bogofilter",
    "spamassassin": "SpamAssassin",
    "spamgate": "spamgate",
    "rspamd": "Rspamd",
}
VARIANTS = ("original", "labels_only", "corrected")


def read_rows(path: Path) -> list[list[str]]:
    """Tab-separated rows of a split or peer output file (blank and ``#`` lines skipped)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise LabelCorrectionsError(f"{path}: cannot read: {exc}") from None
    return [ln.split("\t") for ln in lines if ln.strip() and not ln.startswith("#")]


def write_splits(splits: Path, out: Path, corrections: tuple[LabelCorrection, ...]) -> dict[str, int]:
    """Corrected copies of every ``*_train.tsv``/``*_test.tsv`` in ``splits``, one count per file."""
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    files = sorted(splits.glob("*_train.tsv")) + sorted(splits.glob("*_test.tsv"))
    if not files:
        raise LabelCorrectionsError(f"{splits}: no *_train.tsv / *_test.tsv split files")
    for f in files:
        rows = [(r[0], r[1]) for r in read_rows(f)]
        fixed, applied = relabel(rows, corrections)
        (out / f.name).write_text("".join(f"{lab}\t{p}\n" for lab, p in fixed))
        counts[f.name] = len(applied)
    return counts


def figures(labels: list[str], scores: list[float], threshold: float | None) -> dict[str, Any]:
    """The peers' metrics.py figures for one scored set (unscored messages left out, counted)."""
    keep = [i for i, s in enumerate(scores) if not math.isnan(s)]
    y = np.array([labels[i] == "spam" for i in keep], dtype=bool)
    s = np.array([scores[i] for i in keep], dtype=float)
    r: dict[str, Any] = {
        "n": len(labels),
        "n_spam": int(y.sum()),
        "n_ham": int((~y).sum()),
        "n_failed": len(labels) - len(keep),
    }
    if y.all() or (~y).all():
        raise LabelCorrectionsError("need both spam and ham to compute ROC figures")
    # Catch at an FPR the peers' way (sklearn's ROC steps, ties as one step), not
    # training.metrics.threshold_for_fpr's, so the figures match metrics.py's to the digit.
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    r.update(
        one_minus_roca_pct=metrics.one_minus_roca_pct(y, s),
        catch_at_fpr_0_1=float(tpr[fpr <= 0.001].max()),
        catch_at_fpr_1=float(tpr[fpr <= 0.01].max()),
    )
    if threshold is not None:
        at = metrics.rates_at(y, s, threshold)
        r.update(threshold=threshold, fpr=at["fpr"], fnr=at["fnr"])
    return r


def _scored(path: Path) -> tuple[list[str], list[float], list[str], float | None]:
    rows = read_rows(path)
    bad = [i for i, r in enumerate(rows, 1) if len(r) < 3 or r[0] not in ("ham", "spam")]
    if bad:
        raise LabelCorrectionsError(f"{path}: line {bad[0]} is not label<TAB>score<TAB>path")
    try:
        scores = [float(r[1]) if r[1] not in ("", "nan", "NaN") else math.nan for r in rows]
    except ValueError as exc:
        raise LabelCorrectionsError(f"{path}: {exc}") from None
    meta = Path(str(path) + ".meta.json")
    threshold = json.loads(meta.read_text()).get("threshold") if meta.exists() else None
    return [r[0] for r in rows], scores, [r[2] for r in rows], threshold


def compare_peer(orig: Path, corr: Path, corrections: tuple[LabelCorrection, ...]) -> dict[str, Any]:
    """One filter on one split: the three variants, checked to be the same messages and labels."""
    labels, scores, paths, t_orig = _scored(orig)
    c_labels, c_scores, c_paths, t_corr = _scored(corr)
    fixed, applied = relabel(list(zip(labels, paths, strict=True)), corrections)
    if c_paths != paths:
        raise LabelCorrectionsError(f"{corr}: not the same test messages, in the same order, as {orig}")
    if [lab for lab, _ in fixed] != c_labels:
        raise LabelCorrectionsError(f"{corr}: its labels are not {orig}'s with the corrections applied")
    return {
        "test_corrected": [c.key for c in applied],
        "original": figures(labels, scores, t_orig),
        "labels_only": figures(c_labels, scores, t_orig),
        "corrected": figures(c_labels, c_scores, t_corr),
    }


def compare(
    runs: dict[str, tuple[Path, Path]], splits: Path, corrections: tuple[LabelCorrection, ...]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for split, (orig, corr) in runs.items():
        train = splits / f"{split}_train.tsv"
        n_train = (
            len(relabel([(r[0], r[1]) for r in read_rows(train)], corrections)[1]) if train.exists() else None
        )
        peers = sorted(p.stem for p in orig.glob("*.tsv") if (corr / p.name).exists())
        if not peers:
            raise LabelCorrectionsError(f"{split}: no PEER.tsv present in both {orig} and {corr}")
        for peer in peers:
            r = compare_peer(orig / f"{peer}.tsv", corr / f"{peer}.tsv", corrections)
            rows.append({"split": split, "peer": peer, "train_corrected": n_train, **r})
    return rows


def render(
    rows: list[dict[str, Any]], commands: list[str], n_list: int, notes: list[str] | None = None
) -> str:
    lines = [
        BEGIN,
        "## Label corrections (issue 14)",
        "",
        "Commands (every filter trained and scored by its `shared/peers/run_*.sh`, one after the other, "
        "original and corrected splits in the same session):",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"`datasets/label_corrections.toml` lists {n_list} message(s) whose corpus label is wrong by "
        "content alone (its header says how they were found; it is not exhaustive). It is applied to "
        "both halves of a split and to every filter alike. *orig*: the original run; *labels*: the same "
        "run's scores with the test labels corrected (the labels' effect alone); *corr*: each filter "
        "retrained on the corrected train half and scored on the corrected test half.",
    ]
    for split in dict.fromkeys(r["split"] for r in rows):
        rs = [r for r in rows if r["split"] == split]
        o = rs[0]["original"]
        c = rs[0]["corrected"]
        lines += [
            "",
            f"**{split}** ({o['n']:,} test messages: {o['n_ham']:,} ham / {o['n_spam']:,} spam as given, "
            f"{c['n_ham']:,} / {c['n_spam']:,} corrected; corrections in the test half "
            f"{len(rs[0]['test_corrected'])}, in the train half {rs[0]['train_corrected']})",
            "",
            "| filter | 1-ROCA% orig | labels | corr | catch@FPR0.1% orig | corr "
            "| FPR at default orig | corr |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rs:
            o, lo, c = r["original"], r["labels_only"], r["corrected"]

            def fpr(x: dict[str, Any]) -> str:
                if "fpr" not in x:
                    return "n/a"
                return f"{100 * x['fpr']:.3f}% ({round(x['fpr'] * x['n_ham'])})"

            lines.append(
                f"| {NAMES.get(r['peer'], r['peer'])} (threshold {o.get('threshold', 'n/a')}) "
                f"| {o['one_minus_roca_pct']:.4f} | {lo['one_minus_roca_pct']:.4f} "
                f"| {c['one_minus_roca_pct']:.4f} "
                f"| {100 * o['catch_at_fpr_0_1']:.2f}% | {100 * c['catch_at_fpr_0_1']:.2f}% "
                f"| {fpr(o)} | {fpr(c)} |"
            )
            failed = max(o["n_failed"], c["n_failed"])
            if failed:
                lines.append(f"| ↳ {failed} message(s) unscored, left out | | | | | | | |")
    for note in notes or []:
        lines += ["", note]
    lines.append(END)
    return "\n".join(lines) + "\n"


def _runs(specs: list[str]) -> dict[str, tuple[Path, Path]]:
    runs: dict[str, tuple[Path, Path]] = {}
    for spec in specs:
        name, sep, dirs = spec.partition("=")
        orig, comma, corr = dirs.partition(",")
        if not (sep and comma and name and orig and corr):
            raise LabelCorrectionsError(f"--compare {spec!r}: expected SPLIT=ORIG_DIR,CORRECTED_DIR")
        runs[name] = (Path(orig), Path(corr))
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", type=Path, default=DEFAULT_LIST, help="the corrections list (TOML)")
    ap.add_argument("--splits", type=Path, default=PEERS / "splits", help="the peers' split files")
    ap.add_argument(
        "--write-splits", type=Path, metavar="OUTDIR", help="write corrected copies of the splits"
    )
    ap.add_argument("--compare", nargs="+", metavar="SPLIT=ORIG_DIR,CORRECTED_DIR")
    ap.add_argument("--command", action="append", default=[], help="a peer command to quote in the section")
    ap.add_argument("--note", action="append", default=[], help="a paragraph to add after the tables")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "label_corrections.json")
    ap.add_argument("--markdown", type=Path, help="also replace the section in this file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    if not (args.write_splits or args.compare):
        ap.error("give --write-splits OUTDIR and/or --compare SPLIT=ORIG_DIR,CORRECTED_DIR ...")
    try:
        corrections = load(args.list)
        if args.write_splits:
            for name, n in write_splits(args.splits, args.write_splits, corrections).items():
                print(f"{args.write_splits / name}: {n} label(s) corrected")
        if args.compare:
            rows = compare(_runs(args.compare), args.splits, corrections)
    except LabelCorrectionsError as exc:
        print(f"label_corrections: {exc}", file=sys.stderr)
        return 2
    if not args.compare:
        return 0
    listed = [] if args.list == DEFAULT_LIST else ["--list", str(args.list)]
    command = shlex.join(["python", "bench/label_corrections.py", *listed, "--compare", *args.compare])
    text = render(rows, [*args.command, command], len(corrections), args.note)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    res = {"command": command, "corrections": len(corrections), "notes": args.note, "rows": rows}
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(text)
    if args.markdown:
        update_section(args.markdown, BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
