"""training.label_corrections: the committed list is validated strictly and applied exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spamgate.training.label_corrections import (
    DEFAULT_LIST,
    LabelCorrectionsError,
    load,
    relabel,
)

GOOD = """
[[correction]]
corpus = "trec07p_dev"
path = "ham/data__inmail.1"
label_given = "ham"
label_corrected = "spam"
reason = "Unsolicited stock promotion."
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "corrections.toml"
    p.write_text(text)
    return p


def test_a_valid_list_loads(tmp_path: Path) -> None:
    (c,) = load(_write(tmp_path, GOOD))
    assert (c.key, c.label_given, c.label_corrected) == ("trec07p_dev/ham/data__inmail.1", "ham", "spam")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('label_corrected = "spam"', 'label_corrected = "spma"', "neither 'ham' nor 'spam'"),
        ('label_corrected = "spam"', 'label_corrected = "ham"', "both 'ham'"),
        ('reason = "Unsolicited stock promotion."\n', "", "missing reason"),
        ('reason = "', 'raeson = "x"\nreason = "', "unknown key(s) raeson"),
        ('path = "ham/', 'path = "spam/', "spam/ folder but label_given is 'ham'"),
        ('path = "ham/', 'path = "../ham/', "relative names"),
        ('reason = "Unsolicited stock promotion."', 'reason = "   "', "reason must be a non-empty string"),
        ('reason = "Unsolicited stock promotion."', 'reason = "' + "x" * 401 + '"', "at most 400"),
        ("[[correction]]", "[correction]", "array of tables"),
        ("[[correction]]", "[[corection]]", "unknown top-level key(s) corection"),
        ('corpus = "trec07p_dev"', "corpus = 7", "corpus must be a non-empty string"),
        ("[[correction]]", "[[correction]", "not valid TOML"),
        # not the way split files write a path: the entry would never match and be silently ignored
        ('path = "ham/', 'path = "ham/./', "not in normal form"),
        ('path = "ham/', 'path = "ham//', "not in normal form"),
        ('data__inmail.1"', 'data__inmail.1/"', "not in normal form"),
        ('path = "ham/', 'path = "ham\\\\', "not in normal form"),
    ],
)
def test_a_malformed_entry_is_refused_with_its_reason(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in GOOD
    with pytest.raises(LabelCorrectionsError, match=r"correction|TOML") as err:
        load(_write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value)  # names the file


def test_a_repeated_message_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelCorrectionsError, match=re.escape("repeats trec07p_dev/ham/data__inmail.1")):
        load(_write(tmp_path, GOOD + GOOD))


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LabelCorrectionsError, match="cannot read"):
        load(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe[[correction]]")
    with pytest.raises(LabelCorrectionsError, match="cannot read"):
        load(tmp_path / "bad.toml")


def test_relabel_changes_exactly_the_listed_messages(tmp_path: Path) -> None:
    corrections = load(_write(tmp_path, GOOD))
    rows = [
        ("ham", "trec07p_dev/ham/data__inmail.1"),
        ("ham", "trec07p_dev/ham/data__inmail.10"),  # a longer name with the same prefix stays
        ("spam", "trec07p_dev/spam/data__inmail.2"),
        ("ham", "/abs/data/trec07p_dev/ham/data__inmail.1"),  # absolute copies of a split match too
        ("ham", "/abs/data/other_trec07p_dev/ham/data__inmail.1"),  # a different corpus does not
    ]
    out, applied = relabel(rows, corrections)
    assert [lab for lab, _ in out] == ["spam", "ham", "spam", "spam", "ham"]
    assert [p for _, p in out] == [p for _, p in rows]
    assert len(applied) == 2


def test_relabel_refuses_a_split_whose_label_disagrees_with_the_list(tmp_path: Path) -> None:
    corrections = load(_write(tmp_path, GOOD))
    with pytest.raises(LabelCorrectionsError, match="labelled 'spam' in the split"):
        relabel([("spam", "trec07p_dev/ham/data__inmail.1")], corrections)


def test_the_committed_list_is_valid() -> None:
    corrections = load(DEFAULT_LIST)
    assert corrections, "datasets/label_corrections.toml lists no correction"
