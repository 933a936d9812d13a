"""A reporter attacking the feedback store and the retrain gate (adversarial review, generated mail only).

What a holder of a ``reporter`` token (or an anonymous caller, where allowed) can do to the next
model: flood or bloat the store, hide flipped labels from the per-reporter count, choose the gate's
exam, or make ``spamgate retrain`` fail so the site never learns.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from spamgate.model.labelled import LabelledMessage, Report
from spamgate.service.cli.main import main
from spamgate.service.lifecycle.feedback_store import FeedbackStore
from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.training.corpora import read_corpus
from spamgate.training.featurize import featurize
from spamgate.training.reports import gate_split
from spamgate.training.retrain import EXIT_HELD, GateConfig, retrain
from tests.mail import generated_corpus, make
from tests.test_site_learning import FAST, SMALL


def _decision(out: str) -> dict[str, Any]:
    return dict(json.loads(out[: out.rindex("}") + 1]))


# --- 1. the store ------------------------------------------------------------------------------


def test_hostile_reporter_names_and_claims_are_stored_as_given(tmp_path: Path) -> None:
    """SQL text, NUL bytes and 1 MB names are bound parameters: stored and read back unchanged."""
    store = FeedbackStore(tmp_path / "fb.db")
    for i, name in enumerate(["x'); DROP TABLE reports;--", "a\x00b", "é" * 1000, "z" * (1 << 20)]):
        stored = store.add(make({"Subject": f"w{i}"}), "spam", name, claim=name)
        (row,) = store.history(stored.sha256)
        assert row["reporter"] == name and row["claim"] == name
    assert len(store.reports()) == 4
    store.close()


def test_a_100_mb_report_keeps_what_the_parser_reads(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    big = make({"Subject": "big"}, "A" * (100 << 20))
    stored = store.add(big, "spam", "mallory")
    assert stored.sha256 == hashlib.sha256(big).hexdigest()  # the verdict_id a client knows
    (report,) = store.reports()
    assert len(report.message.raw) == store.max_message_bytes
    store.close()


# --- 2. the gate -------------------------------------------------------------------------------


def test_anonymous_reports_from_many_networks_are_one_reporter_in_the_count(
    tmp_path: Path, site: tuple[Path, Path, str]
) -> None:
    """SECURITY.md: "all anonymous reports count as one" reporter for the per-reporter count. The
    server names an anonymous reporter by its /24 or /64 (``anonymous@NET``), so before the fix
    each network had its own 50: 4 networks x 40 flipped labels (160 > 50), padded with agreeing
    reports to 16% of each network's and of all reports, were promoted. An IPv6 caller has 65,536
    /64s in a /48."""
    reg, base, active = site
    reports: list[Report] = []
    for n in range(4):
        who = f"anonymous@2001:db8:0:{n}::/64"
        flipped = generated_corpus(40, seed=200 + n)
        reports += [
            Report(LabelledMessage(0 if lab == "spam" else 1, raw, f"f{n}-{i}", None), who, False)
            for i, (lab, raw) in enumerate(flipped)
        ]
        honest = generated_corpus(210, seed=300 + n)
        reports += [
            Report(LabelledMessage(1 if lab == "spam" else 0, raw, f"h{n}-{i}", None), who, False)
            for i, (lab, raw) in enumerate(honest)
        ]
    base_msgs = list(read_corpus(base))
    _, decision = retrain(
        base_msgs,
        ModelRegistry(reg).load(active),
        tmp_path / "out",
        SMALL,
        FAST,
        GateConfig(),
        [],
        n_jobs=1,
        progress=False,
        reports=reports,
    )
    rep = decision["reports"]
    assert rep["contradicting"] == 160 and rep["contradicting_fraction"] < 0.2
    assert decision.get("held") == "contradicting reports", decision["why"]
    assert rep["most_contradicting_untrusted"]["contradicting"] == 160
    assert "anonymous" in rep["most_contradicting_untrusted"]["reporter"]


def _held_back_base(base: Path) -> list[LabelledMessage]:
    """The base mail ``gate_split`` holds back (public corpora: a reporter can compute it too)."""
    msgs = list(read_corpus(base))
    rows = featurize(msgs, SMALL, n_jobs=1, progress=False)  # dated by their Date header
    _, hold, _, _ = gate_split(rows.order, rows.digests, [], GateConfig().holdout)
    return [msgs[i] for i in hold.tolist()]


def test_an_untrusted_reporter_cannot_take_mail_out_of_the_exam(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A reporter who has the base corpus (the public ones are a download away) reports the held-back
    ham with its own, correct label: nothing contradicts, yet before the fix each reported message
    left the exam (it became training mail), the gate had no ham to judge on, and every nightly
    retrain failed with exit 2, so the site never learnt. An untrusted report of held-back base mail
    now leaves the exam as it was and is not trained on."""
    reg, base, active = site
    held = _held_back_base(base)
    ham = [m for m in held if m.label == 0]
    assert ham and len(ham) < len(held)
    db = tmp_path / "fb.db"
    store = FeedbackStore(db)
    for m in ham:
        store.add(m.raw, "ham", "mallory", role="reporter")
    for label, raw in generated_corpus(60, seed=77):  # an honest user's reports
        store.add(raw, label, "alice", role="reporter")
    store.close()
    args = ["retrain", "--registry", str(reg), "--corpus", str(base), "--feedback", str(db)]
    rc = main([*args, "--jobs", "1", "--quiet", "--no-activate"])
    captured = capsys.readouterr()
    assert rc in (0, 1), captured.err
    decision = _decision(captured.out)
    assert decision["holdout_messages"] == len(held)
    assert decision["reports"]["training"] == 60  # alice's; mallory's reports of the exam are not
    assert decision["reports"]["untrusted_reports_of_held_back_mail"] == len(ham)
    assert ModelRegistry(reg).active() == active


# --- 3. robustness -----------------------------------------------------------------------------


def _good_store(path: Path) -> Path:
    store = FeedbackStore(path)
    for label, raw in generated_corpus(40, seed=78):
        store.add(raw, label, "alice")
    store.close()
    return path


def _truncated(path: Path) -> None:
    _good_store(path)
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:
        f.truncate(3000)


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"\x89garbage" * 4096)


def _wrong_schema(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE reports(x)")


def _report_without_message(path: Path) -> None:
    _good_store(path)
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM messages WHERE rowid = (SELECT MIN(rowid) FROM messages)")


def _message_stored_as_text(path: Path) -> None:
    _good_store(path)
    with sqlite3.connect(path) as con:
        con.execute("UPDATE messages SET raw = 'text' WHERE rowid = (SELECT MIN(rowid) FROM messages)")


@pytest.mark.parametrize(
    "damage", [_truncated, _not_a_database, _wrong_schema, _report_without_message, _message_stored_as_text]
)
def test_a_damaged_feedback_store_is_exit_2_in_one_line(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str], damage: object
) -> None:
    """Before the fix each was a traceback and exit 1, which is the gate's "not promoted"."""
    reg, base, active = site
    db = tmp_path / "fb.db"
    damage(db)  # type: ignore[operator]
    args = ["retrain", "--registry", str(reg), "--corpus", str(base), "--feedback", str(db), "--quiet"]
    rc = main([*args, "--jobs", "1"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("spamgate retrain: ") and str(db) in err and "Traceback" not in err
    assert ModelRegistry(reg).active() == active


def test_unparseable_reported_messages_still_train(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """NUL bytes, binary noise and a 2,000-part multipart with no end are mail the parser must survive."""
    reg, base, _ = site
    db = _good_store(tmp_path / "fb.db")
    store = FeedbackStore(db)
    for i, raw in enumerate(
        [
            b"\x00" * 1000,
            b"\xff\xfe\x00\x01 noise",
            b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n' + b"--x\r\n" * 2000,
        ]
    ):
        store.add(raw, "spam" if i % 2 else "ham", "alice")
    store.close()
    args = ["retrain", "--registry", str(reg), "--corpus", str(base), "--feedback", str(db), "--quiet"]
    rc = main([*args, "--jobs", "1", "--no-activate"])
    captured = capsys.readouterr()
    assert rc in (0, 1), captured.err
    assert _decision(captured.out)["reports"]["training"] == 43


def test_a_missing_active_model_is_exit_2_and_nothing_is_written(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    reg, base, active = site
    copy = tmp_path / "models"
    shutil.copytree(reg, copy)
    shutil.rmtree(copy / active)
    before = sorted(p.name for p in copy.iterdir())
    db = _good_store(tmp_path / "fb.db")
    args = ["retrain", "--registry", str(copy), "--corpus", str(base), "--feedback", str(db), "--quiet"]
    assert main([*args, "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spamgate retrain: ") and active in err and "Traceback" not in err
    assert sorted(p.name for p in copy.iterdir()) == before


def test_a_one_class_or_empty_report_set_is_a_clear_outcome(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    reg, base, _ = site
    empty = tmp_path / "empty.db"
    FeedbackStore(empty).close()
    spam_only = tmp_path / "spam.db"
    store = FeedbackStore(spam_only)
    for label, raw in generated_corpus(40, seed=79):
        if label == "spam":
            store.add(raw, label, "alice")
    store.close()
    for db, with_base, want in [(empty, True, (0, 1)), (spam_only, True, (0, 1)), (spam_only, False, (2,))]:
        corpus = ["--corpus", str(base)] if with_base else []
        args = ["retrain", "--registry", str(reg), *corpus, "--feedback", str(db), "--quiet", "--no-activate"]
        rc = main([*args, "--jobs", "1"])
        captured = capsys.readouterr()
        assert rc in want and "Traceback" not in captured.err, (db, with_base, captured.err)
    assert rc == 2 and "held-back" in captured.err
    assert EXIT_HELD == 3
