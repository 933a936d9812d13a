"""bench/label_corrections.py: corrected split copies, and the with/without comparison's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.label_corrections import compare, write_splits
from spamgate.training.label_corrections import LabelCorrection, LabelCorrectionsError

WRONG = LabelCorrection("c", "ham/h0", "ham", "spam", "Stock promotion.")
HAM = [f"c/ham/h{i}" for i in range(4)]
SPAM = [f"c/spam/s{i}" for i in range(4)]


def _split(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [("ham", p) for p in HAM] + [("spam", p) for p in SPAM]
    (folder / name).write_text("".join(f"{lab}\t{p}\n" for lab, p in rows))


def _run(folder: Path, labels: dict[str, str], scores: dict[str, float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "peer.tsv").write_text("".join(f"{labels[p]}\t{scores[p]}\t{p}\n" for p in HAM + SPAM))
    (folder / "peer.tsv.meta.json").write_text('{"threshold": 0.5}')


def test_write_splits_corrects_both_halves(tmp_path: Path) -> None:
    for half in ("S_train.tsv", "S_test.tsv"):
        _split(tmp_path / "in", half)
    counts = write_splits(tmp_path / "in", tmp_path / "out", (WRONG,))
    assert counts == {"S_train.tsv": 1, "S_test.tsv": 1}
    for half in ("S_train.tsv", "S_test.tsv"):
        lines = (tmp_path / "out" / half).read_text().splitlines()
        assert lines[0] == "spam\tc/ham/h0"
        assert lines[1:] == (tmp_path / "in" / half).read_text().splitlines()[1:]


def test_compare_reports_the_three_variants_and_refuses_a_mislabelled_run(tmp_path: Path) -> None:
    _split(tmp_path / "splits", "S_train.tsv")
    given = {p: "ham" for p in HAM} | {p: "spam" for p in SPAM}
    fixed = given | {"c/ham/h0": "spam"}
    # h0 scores above every spam: a false positive as given, the top spam once corrected.
    scores = {p: 0.1 * i for i, p in enumerate(HAM)} | {p: 0.6 + 0.05 * i for i, p in enumerate(SPAM)}
    scores["c/ham/h0"] = 0.99
    _run(tmp_path / "orig", given, scores)
    _run(tmp_path / "corr", fixed, scores)
    runs = {"S": (tmp_path / "orig", tmp_path / "corr")}
    (row,) = compare(runs, tmp_path / "splits", (WRONG,))
    assert row["train_corrected"] == 1 and row["test_corrected"] == ["c/ham/h0"]
    assert row["original"]["fpr"] == 0.25 and row["original"]["one_minus_roca_pct"] == pytest.approx(25.0)
    assert row["labels_only"]["fpr"] == 0.0 and row["labels_only"]["one_minus_roca_pct"] == 0.0
    assert row["corrected"]["n_spam"] == 5
    _run(tmp_path / "corr", given, scores)  # a "corrected" run scored on uncorrected labels
    with pytest.raises(LabelCorrectionsError, match=r"not .* with the corrections applied"):
        compare(runs, tmp_path / "splits", (WRONG,))
