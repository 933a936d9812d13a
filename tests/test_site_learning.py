"""Learning a site from its reports (issue 15) and not being steered by them (issue 16).

Reports are training mail; the gate judges on held-back base mail and trusted
reports only; a candidate trained on reports that contradict confident
verdicts is held (exit 3); an untrusted reporter cannot overwrite a trusted
label; a model knows which messages it trained on.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spamgate.model.artifact import ArtifactError, load_artifact
from spamgate.model.labelled import LabelledMessage, Report
from spamgate.model.training_filter import TRAINING_DIGESTS, contains, load_training_filter, message_keys
from spamgate.service.cli.main import main
from spamgate.service.lifecycle.feedback_store import FeedbackStore
from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.training.fit import fit
from spamgate.training.reports import gate_split
from spamgate.training.retrain import ADAPTS, EXIT_HELD, GateConfig, retrain
from tests.conftest import SITE_FEATURES, SITE_TRAINING
from tests.mail import generated_corpus, make

SMALL = SITE_FEATURES
FAST = SITE_TRAINING


def _msgs(n: int, seed: int, flip: bool = False, start: float = 0.0) -> list[LabelledMessage]:
    out = []
    for i, (label, raw) in enumerate(generated_corpus(n, seed=seed)):
        y = 1 if label == "spam" else 0
        out.append(LabelledMessage(1 - y if flip else y, raw, f"s{seed}-{i}", start + i))
    return out


def test_untrusted_reporter_cannot_overwrite_a_trusted_label(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    a, b = make({"Subject": "a"}), make({"Subject": "b"})
    store.add(a, "spam", "admin@site")
    store.add(a, "ham", "mallory")  # later, untrusted: does not win over the trusted label
    store.add(b, "spam", "alice")
    store.add(b, "ham", "bob")  # equal trust: the later label wins, as before
    by_raw = {r.message.raw: r for r in store.reports({"admin@site"})}
    assert by_raw[a].message.label == 1 and by_raw[a].trusted and by_raw[a].reporter == "admin@site"
    assert by_raw[b].message.label == 0 and not by_raw[b].trusted
    # without naming anyone trusted, latest wins among equals (the old behaviour)
    assert {m.raw: m.label for m in store.labelled()}[a] == 0
    store.add(a, "ham", "admin@site")  # a trusted reporter may change a trusted label
    assert {m.raw: m.label for m in store.labelled({"admin@site"})}[a] == 0
    store.close()
    # the store records the caller's role (issue 16's server): role "admin" is trusted without being named
    con = sqlite3.connect(tmp_path / "fb.db")
    con.execute("UPDATE reports SET role = 'admin' WHERE reporter = 'alice'")
    con.commit()
    con.close()
    store = FeedbackStore(tmp_path / "fb.db")
    assert {m.raw: m.label for m in store.labelled()}[b] == 1  # alice (admin) outranks bob
    store.close()


def test_gate_split_holds_back_base_and_trusted_reports_only() -> None:
    import hashlib

    order = [5.0, 1.0, None, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, None]
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(11)]
    digests[2], digests[10] = "0" * 64, "f" * 64  # undated: one in the held-back hash range, one not
    trusted = [False] * 50 + [True] * 10 + [False] * 40
    base_tr, base_ho, rep_tr, rep_ho = gate_split(order, digests, trusted, 0.2)
    assert sorted(base_ho.tolist()) == [2, 8, 9]  # the newest 20% of the dated mail + the sampled undated
    assert base_tr.tolist() == [1, 4, 3, 5, 0, 6, 7, 10]  # oldest first
    assert rep_ho.tolist() == [58, 59]  # the newest 20% of the trusted reports
    assert len(rep_tr) == 98 and not set(rep_tr) & set(rep_ho)
    # no trusted reporter: every report trains, however many there are
    _, _, rep_tr, rep_ho = gate_split(order, digests, [False] * 1500, 0.15)
    assert len(rep_tr) == 1500 and len(rep_ho) == 0
    # an undated corpus (Enron-Spam: ham, then spam) is sampled evenly, not cut at its tail
    n = 2000
    undated = [hashlib.sha256(f"m{i}".encode()).hexdigest() for i in range(n)]
    _, held, _, _ = gate_split([None] * n, undated, [], 0.15)
    assert 0.12 < len(held) / n < 0.18 and 0.35 < (held < n // 2).mean() < 0.65
    with pytest.raises(ValueError):
        gate_split(order, digests, trusted, 0.6)


def test_sample_weight_moves_the_fit_and_bad_weights_are_refused() -> None:
    from spamgate.model.features import FeatureExtractor

    msgs = _msgs(80, seed=61)
    X = FeatureExtractor(SMALL).transform([m.raw for m in msgs])
    y = np.array([m.label for m in msgs])
    plain = fit(X, y, FAST, n_jobs=1)
    w = np.ones(len(y))
    w[:10] = 50.0
    weighted = fit(X, y, FAST, n_jobs=1, sample_weight=w)
    assert not np.allclose(plain.model.coef, weighted.model.coef)
    with pytest.raises(ValueError, match="sample_weight"):
        fit(X, y, FAST, n_jobs=1, sample_weight=np.zeros(len(y)))




def test_poisoning_replay_is_held(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16's attack on generated mail: 1,500 inverted anonymous reports. The candidate is held."""
    reg, base, active = site
    db = tmp_path / "fb.db"
    store = FeedbackStore(db)
    for label, raw in generated_corpus(1500, seed=42):
        store.add(raw, "ham" if label == "spam" else "spam", "")  # anonymous, every label inverted
    store.close()
    args = ["retrain", "--registry", str(reg), "--corpus", str(base), "--feedback", str(db)]
    rc = main([*args, "--jobs", "1", "--quiet"])
    out = capsys.readouterr().out
    assert rc == EXIT_HELD == 3, out
    assert "HELD" in out and "contradict" in out and "poisoning" in out
    assert ModelRegistry(reg).active() == active
    decision = json.loads(out[: out.rindex("}") + 1])
    # the reports were training mail, never the exam: the gate judged on held-back base mail
    assert decision["reports"]["training"] == 1500 and decision["holdout"]["trusted_reports"] == 0
    assert decision["holdout"]["base"] == 60 and decision["reports"]["contradicting_fraction"] > 0.2
    # looser limits let the same candidate reach the gate (which it then fails on clean base mail)
    loose = ["--max-contradicting", "1", "--max-contradicting-per-reporter", "1500"]
    rc = main([*args, "--jobs", "1", "--quiet", *loose])
    assert rc == 1, capsys.readouterr().out
    assert ModelRegistry(reg).active() == active
    assert main([*args, "--max-contradicting", "2"]) == 2
    assert "max_contradicting" in capsys.readouterr().err


@pytest.mark.parametrize("adapt", ADAPTS)
def test_honest_reports_train_and_are_counted(
    tmp_path: Path, site: tuple[Path, Path, str], adapt: str
) -> None:
    reg, base, active = site
    reports = [Report(m, "user", False) for m in _msgs(40, seed=43, start=1e9)]
    reports += [Report(m, "admin", True) for m in _msgs(20, seed=44, start=2e9)]
    base_msgs = [LabelledMessage(m.label, m.raw, m.source, float(i)) for i, m in enumerate(_base(base))]

    def run(against: Any, out: str, **kw: Any) -> tuple[Path, dict[str, Any]]:
        gate = GateConfig(roca_tolerance=10, fpr_tolerance=1)
        return retrain(
            base_msgs, against, tmp_path / out, SMALL, FAST, gate, [], n_jobs=1, progress=False,
            reports=reports, **kw,
        )

    path, decision = run(ModelRegistry(reg).load(active), "out", adapt=adapt)
    assert decision["promote"] and "held" not in decision
    assert decision["reports"]["method"].startswith("site layer" if adapt == "site_layer" else "refit, each")
    assert decision["reports"]["training"] == 57 and decision["holdout"]["trusted_reports"] == 3
    # the active model trained on all the base mail, the held-back part too: a control stands in for it
    assert (
        decision["compared_with"]["kind"] == "control" and decision["reference"]["trained_on_holdout"] == 60
    )
    art = load_artifact(path)
    assert art.site_reports == 57
    filt = load_training_filter(art.path, art.manifest)
    assert filt is not None
    untrusted = message_keys([r.message.raw for r in reports[:40]])
    assert contains(filt, untrusted).all()  # every untrusted report is training mail
    # the next retrain splits the base mail the same way: the candidate it replaces never saw the
    # held-back mail, so it is compared with that model itself
    _, again = run(art, "out2")
    assert again["compared_with"]["kind"] == "active" and again["reference"]["trained_on_holdout"] == 0


def _base(folder: Path) -> list[LabelledMessage]:
    from spamgate.training.corpora import read_corpus

    return list(read_corpus(folder))


def test_first_retrain_is_gated_against_the_bundled_model(tmp_path: Path) -> None:
    msgs = _msgs(120, seed=45)
    _, decision = retrain(
        msgs, None, tmp_path / "reg", SMALL, FAST, GateConfig(holdout=0.3), [], n_jobs=1, progress=False
    )
    assert decision["reference"]["kind"] == "bundled"
    assert decision["compared_with"]["kind"] in ("bundled", "control")
    assert "no active model" not in decision["why"]


def test_evaluate_reports_training_overlap(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    reg, base, active = site
    model = reg / active
    mixed = tmp_path / "mixed"
    for i, (label, raw) in enumerate(generated_corpus(30, seed=46)):
        (mixed / label).mkdir(parents=True, exist_ok=True)
        (mixed / label / f"new{i}").write_bytes(raw)
    for label in ("ham", "spam"):
        for f in sorted((base / label).iterdir())[:10]:
            (mixed / label / f.name).write_bytes(f.read_bytes())
    assert main(["evaluate", "--model", str(model), "--corpus", str(mixed)]) == 0
    assert "in the model's training mail: 20 of 50 evaluation messages" in capsys.readouterr().out
    # an artifact written before the filter existed says "unknown"
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((model / "manifest.json").read_text())
    del manifest["files"][TRAINING_DIGESTS]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "weights.npz").write_bytes((model / "weights.npz").read_bytes())
    assert main(["evaluate", "--model", str(old), "--corpus", str(mixed)]) == 0
    assert "in the model's training mail: unknown" in capsys.readouterr().out


def test_training_filter_is_covered_by_the_manifest(tmp_path: Path, site: tuple[Path, Path, str]) -> None:
    reg, _, active = site
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in (reg / active).iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    load_artifact(copy)
    data = bytearray((copy / TRAINING_DIGESTS).read_bytes())
    data[-1] ^= 1
    (copy / TRAINING_DIGESTS).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(copy)


def test_site_layer_learns_the_reports_and_folds_into_one_vector() -> None:
    from spamgate.model.features import FeatureExtractor
    from spamgate.training.site_layer import fit_layer, fit_with_site_layer

    fx = FeatureExtractor(SMALL)
    base = _msgs(120, seed=71)
    Xb, yb = fx.transform([m.raw for m in base]), np.array([m.label for m in base])
    # the site: newsletters its users want (ham) that read like the base corpus's spam
    site = [
        make({"Subject": f"URGENT offer club news {i}", "From": "Club <news@club.example>"}, t)
        for i, t in enumerate(["WIN the members' prize draw, click http://club.example/draw now!"] * 30)
    ]
    Xr, yr = fx.transform(site), np.zeros(len(site), dtype=np.int8)
    control, layered = fit_with_site_layer(Xb, yb, Xr, yr, FAST, n_jobs=1)
    plain = fit(Xb, yb, FAST, n_jobs=1)
    assert np.array_equal(control.model.coef, plain.model.coef)  # the control is the recipe itself
    assert layered.model.coef.shape == plain.model.coef.shape  # one weight vector
    assert all(pt["site_reports_ham"] == len(site) for pt in layered.operating_points)  # held at the site
    before, after = control.model.margin(Xr), layered.model.margin(Xr)
    assert (after < before).all() and (after < 0).mean() > 0.9  # the site's newsletters are ham now
    # the base mail is still ranked as before, and its spam still scores as spam (the layer moved the
    # site's own words, not just the intercept)
    assert metrics_auc(yb, layered.model.margin(Xb)) > 0.99
    assert (layered.model.margin(Xb)[yb == 1] > 0).mean() > 0.9
    coef, b = fit_layer(plain.model.coef, plain.model.intercept, Xr[:0], yr[:0])
    assert coef is plain.model.coef and b == plain.model.intercept  # no reports: the base weights


def metrics_auc(y: np.ndarray, s: np.ndarray) -> float:
    from spamgate.training import metrics

    return metrics.roc_auc(y, s)


def test_diluted_poisoning_is_held_by_the_reporter(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16 review: 300 inverted reports hidden among 1,500 honest ones (16.7% < 20%) were promoted.

    The fraction is also taken per reporter, so the one reporter whose reports contradict the
    reference holds the candidate.
    """
    reg, base, _ = site
    db = tmp_path / "fb.db"
    store = FeedbackStore(db)
    for label, raw in generated_corpus(300, seed=52):
        store.add(raw, "ham" if label == "spam" else "spam", "mallory")
    for i, (label, raw) in enumerate(generated_corpus(1500, seed=53)):
        store.add(raw, label, f"user{i % 30}")  # honest, 50 reports each
    store.close()
    args = ["retrain", "--registry", str(reg), "--corpus", str(base), "--feedback", str(db)]
    rc = main([*args, "--jobs", "1", "--quiet"])
    out = capsys.readouterr().out
    decision = json.loads(out[: out.rindex("}") + 1])
    assert decision["reports"]["contradicting_fraction"] < 0.2  # all reports together pass
    assert decision["reports"]["worst_reporter"]["reporter"] == "mallory"
    assert rc == EXIT_HELD, out
    assert "'mallory'" in out and "HELD" in out


def test_padding_with_honest_reports_buys_no_room(
    tmp_path: Path, site: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding F9: one reporter's flipped labels padded with her own honest reports to 16.7%, under the
    20% share of all reports and of her own, as in the review (300 among 1,500, scaled to 60 among 300:
    that candidate was promoted too and passed all 30 spam she called ham). Her count holds it."""
    reg, base, active = site
    db = tmp_path / "fb.db"
    store = FeedbackStore(db)
    for label, raw in generated_corpus(60, seed=54):
        store.add(raw, "ham" if label == "spam" else "spam", "mallory")
    for label, raw in generated_corpus(300, seed=55):
        store.add(raw, label, "mallory")
    store.close()
    args = ["retrain", "--registry", str(reg), "--corpus", str(base), "--feedback", str(db), "--jobs", "1"]
    rc = main([*args, "--quiet"])
    out = capsys.readouterr().out
    decision = json.loads(out[: out.rindex("}") + 1])
    reports = decision["reports"]
    # the shares pass: only the count holds it
    assert reports["contradicting_fraction"] < 0.2 and reports["worst_reporter"]["fraction"] < 0.2
    most = {"reporter": "mallory", "contradicting": 60, "reports": 360}
    assert reports["most_contradicting_untrusted"] == most
    assert rc == EXIT_HELD, out
    assert "untrusted reporter 'mallory'" in decision["why"] and "--max-contradicting-per-reporter" in out
    assert ModelRegistry(reg).active() == active
    # the limit is what held it: at her count the same reports go on to the gate
    rc = main([*args, "--quiet", "--no-activate", "--max-contradicting-per-reporter", "60"])
    out = capsys.readouterr().out
    assert rc != EXIT_HELD and "held" not in json.loads(out[: out.rindex("}") + 1]), out
    # limits are checked before any work, with the others' exit code
    assert main([*args, "--max-contradicting-per-reporter", "-1"]) == 2
    assert "max_contradicting_per_reporter" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*args, "--max-contradicting-per-reporter", "ten"])
    assert exc.value.code == 2
    assert ModelRegistry(reg).active() == active


def test_honest_contradictions_and_trusted_volume_are_not_held(
    tmp_path: Path, site: tuple[Path, Path, str]
) -> None:
    """Honest reporters contradict confident verdicts too: a few each, and one heavy reporter at the
    rate measured at a new site's first retrain (45 of Ling-Spam's 1,438, GateConfig); a trusted
    reporter's volume is not counted (the share of all reports still is). Honest disagreement here is
    generated spam reported as ham (mail the site's users want): to the gate, any label the model was
    sure of the other way."""
    reg, base, active = site

    def wanted(n: int, seed: int) -> list[LabelledMessage]:
        return [m for m in _msgs(2 * n, seed=seed, flip=True, start=1e9) if m.label == 0][:n]

    reports: list[Report] = []
    for u in range(4):
        reports += [Report(m, f"user{u}", False) for m in _msgs(30, seed=80 + u, start=1e9)]
        reports += [Report(m, f"user{u}", False) for m in wanted(5, seed=90 + u)]
    reports += [Report(m, "heavy", False) for m in _msgs(250, seed=96, start=1e9)]
    reports += [Report(m, "heavy", False) for m in wanted(45, seed=97)]
    # the admin's oldest reports contradict (the newest 15% are held back for the gate, not trained on)
    reports += [Report(m, "admin", True) for m in _msgs(55, seed=98, flip=True, start=1e9)]
    reports += [Report(m, "admin", True) for m in _msgs(300, seed=99, start=2e9)]
    base_msgs = [LabelledMessage(m.label, m.raw, m.source, float(i)) for i, m in enumerate(_base(base))]
    gate = GateConfig(roca_tolerance=10, fpr_tolerance=1, catch_tolerance=1)
    _, decision = retrain(
        base_msgs, ModelRegistry(reg).load(active), tmp_path / "out", SMALL, FAST, gate, [], n_jobs=1,
        progress=False, reports=reports,
    )
    assert "held" not in decision and decision["promote"], decision["why"]
    most = decision["reports"]["most_contradicting_untrusted"]
    assert most == {"reporter": "heavy", "contradicting": 45, "reports": 295}
    # the admin's 55 trained and contradicted: more than 50, from a trusted reporter
    assert decision["reports"]["contradicting"] == 4 * 5 + 45 + 55


def test_gate_limits_are_validated() -> None:
    from spamgate.service.cli.main import build_parser

    for bad in (-1, 2.5, True, "50"):
        with pytest.raises(ValueError, match="max_contradicting_per_reporter"):
            GateConfig(max_contradicting_per_reporter=bad)  # type: ignore[arg-type]
    assert GateConfig(max_contradicting_per_reporter=0).max_contradicting_per_reporter == 0
    # the CLI's default is GateConfig's (its comment holds the evidence)
    args = build_parser().parse_args(["retrain"])
    assert args.max_contradicting_per_reporter == GateConfig().max_contradicting_per_reporter


def test_thresholds_are_raised_to_hold_on_the_site_reports() -> None:
    from spamgate.training import metrics
    from spamgate.training.site_layer import held_at_site

    rng = np.random.default_rng(0)
    yb = np.array([0] * 900 + [1] * 100)
    pb = np.where(yb == 1, 0.99, rng.uniform(0, 0.5, len(yb)))
    yr = np.array([0] * 40 + [1] * 10)
    pr = np.where(yr == 1, 0.999, rng.uniform(0.6, 0.95, len(yr)))  # the site's ham scores higher
    y, p = np.concatenate([yb, yr]), np.concatenate([pb, pr])
    points = metrics.operating_points(y, p)
    raised = held_at_site(points, y, p, len(yb))
    one = next(pt for pt in raised if pt["name"] == "fpr_1%")
    assert (
        one["threshold"] > pr[yr == 0].max() and one["set_by"] == "site reports" and one["site_extrapolated"]
    )
    assert all(r["threshold"] >= q["threshold"] for r, q in zip(raised, points, strict=True))
    assert held_at_site(points, y[:1000], p[:1000], 1000) == points  # no reported ham: unchanged


def test_a_first_retrain_keeps_the_new_site_thresholds_as_floors(tmp_path: Path) -> None:
    """Issue 15: until 10 / FPR of the site's own ham stand behind a point, the new-site threshold of
    the model retrained from is its lower bound (trec07p after 1,000 reports, 217 of them ham: the own
    FPR-0.1% point gave 0.113% on the site's later ham)."""
    from spamgate.model.bundled import bundled_model_path

    bundled = load_artifact(bundled_model_path())
    reports = [Report(m, "admin", True) for m in _msgs(60, seed=46, start=1e9)]
    path, _ = retrain(
        _msgs(120, seed=45), None, tmp_path / "reg", SMALL, FAST, GateConfig(holdout=0.3, roca_tolerance=10),
        [], n_jobs=1, progress=False, reports=reports,
    )
    art = load_artifact(path)
    assert art.site_reports > 0 and not art.at_new_site
    floors = {p.target_fpr: p.threshold for p in bundled.new_site_operating_points}
    assert {p.target_fpr: p.threshold for p in art.info.new_site_floor_points} == floors
    effective = {p.target_fpr: p for p in art.policy_points}
    for own in art.operating_points:
        assert own.site_ham is not None and own.site_ham < 10 / own.target_fpr  # a few dozen site ham
        assert effective[own.target_fpr].threshold == max(own.threshold, floors[own.target_fpr])
    assert any(p.floored for p in art.policy_points)
    # and the next retrain from this one carries the same floors on
    again, _ = retrain(
        _msgs(120, seed=45), art, tmp_path / "reg2", SMALL, FAST, GateConfig(holdout=0.3, roca_tolerance=10),
        [], n_jobs=1, progress=False, reports=reports,
    )
    assert {p.target_fpr: p.threshold for p in load_artifact(again).info.new_site_floor_points} == floors


def test_two_retrains_of_the_same_reports_in_one_second_get_two_versions(
    tmp_path: Path, site: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version name is the UTC second plus the training data's hash: the same reports retrained twice
    within a second (``--no-activate``, then again) made the second fail "already exists", exit 2 (it
    showed as a flaky test above)."""
    from datetime import UTC, datetime

    import spamgate.training.train as train_module
    from spamgate.training.train import new_version

    class _Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> _Frozen:
            return cls(2026, 12, 1, 12, 0, 0, tzinfo=UTC)

    monkeypatch.setattr(train_module, "datetime", _Frozen)
    reg, base, _ = site
    db = tmp_path / "fb.db"
    store = FeedbackStore(db)
    for label, raw in generated_corpus(40, seed=77):
        store.add(raw, label, "helpdesk")
    store.close()
    args = ["retrain", "--registry", str(reg), "--corpus", str(base), "--feedback", str(db), "--jobs", "1"]
    assert main([*args, "--quiet", "--no-activate"]) != 2
    assert main([*args, "--quiet", "--no-activate"]) != 2
    made = sorted(p.name for p in reg.iterdir() if p.name.startswith("20261201-120000-"))
    assert len(made) == 2 and made[1] == made[0] + "-2"
    assert new_version(made[0].split("-")[2], root=reg) == made[0] + "-3"
