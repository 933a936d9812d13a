"""New-site operating points: the highest left-out-site threshold, chosen while a site has no reports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spamgate.model.artifact import Artifact, load_artifact
from spamgate.model.features import FeatureConfig
from spamgate.service.policy.settings import Policy
from spamgate.training.fit import TrainConfig
from spamgate.training.new_site import SiteScores, new_site_points
from spamgate.training.train import CorpusSpec, train
from tests.conftest import write_corpus


def test_new_site_threshold_is_the_highest_over_left_out_sites() -> None:
    rng = np.random.default_rng(0)
    # Site a: ham low, so its FPR-1% threshold is low; site b: ham scores high (a new kind of mail).
    y_a, y_b = np.r_[np.zeros(2000), np.ones(500)], np.r_[np.zeros(300), np.ones(300)]
    a = SiteScores("a", y_a, np.r_[rng.uniform(0, 0.3, 2000), np.ones(500)], 0)
    b = SiteScores("b", y_b, np.r_[rng.uniform(0, 0.9, 300), np.ones(300)], 0)
    points = {p["name"]: p for p in new_site_points([a, b])}
    p1 = points["fpr_1%"]
    assert p1["set_by"] == "b" and p1["threshold"] > 0.85
    assert p1["threshold"] == max(p1["sites"]["a"]["threshold"], p1["sites"]["b"]["threshold"])
    # At the one new-site threshold every left-out site keeps its FPR at or below the target.
    assert all(s["at_new_site_threshold"]["fpr"] <= 0.01 for s in p1["sites"].values())
    assert p1["fpr"] <= 0.01
    # Ten false positives at FPR 1% need 1,000 ham: site b's 300 are too few, site a's 2,000 not.
    assert p1["extrapolated"] and p1["sites"]["b"]["extrapolated"] and not p1["sites"]["a"]["extrapolated"]
    assert not points["fpr_5%"]["extrapolated"]


def test_extrapolated_point_takes_the_fpr_upper_bound_not_the_quantile() -> None:
    rng = np.random.default_rng(1)

    def site(name: str, n_ham: int) -> SiteScores:
        ham = rng.uniform(0.0, 0.99, n_ham)
        return SiteScores(name, np.r_[np.zeros(n_ham), np.ones(50)], np.r_[ham, np.ones(50)], 0)

    # At FPR 0.1%: 6,000 ham (the quantile lets 6 through, the 95% bound only 1: 2 of 6,000 bound
    # the FPR at 0.105%), 1,000 ham (even 0 of 1,000 bounds it only at 0.3%: above all its ham),
    # 20,000 ham (10 / 0.001 stand behind it: the quantile, 20 through).
    mid, small, large = site("mid", 6000), site("small", 1000), site("large", 20000)
    point = {p["name"]: p for p in new_site_points([mid, small, large])}["fpr_0.1%"]
    per = point["sites"]
    ham_mid = np.sort(mid.probs[mid.y == 0])[::-1]
    assert per["mid"]["threshold_rule"] == "upper_bound_95" and per["mid"]["false_positives"] == 1
    assert per["mid"]["threshold"] == np.nextafter(ham_mid[1], np.inf)
    assert per["mid"]["quantile_threshold"] == np.nextafter(ham_mid[6], np.inf)
    assert per["small"]["threshold_rule"] == "above_all_ham" and per["small"]["false_positives"] == 0
    assert per["large"]["threshold_rule"] == "quantile" and per["large"]["false_positives"] == 20
    assert point["extrapolated"] and point["threshold"] == max(s["threshold"] for s in per.values())
    # A point every site measures (FPR 5%: 50 of 1,000 ham) keeps the quantile everywhere.
    five = {p["name"]: p for p in new_site_points([mid, small, large])}["fpr_5%"]
    assert {s["threshold_rule"] for s in five["sites"].values()} == {"quantile"}


@pytest.fixture(scope="module")
def two_site_model(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The recipe trained on two generated sites with new-site points (one fit for the tests below)."""
    tmp_path = tmp_path_factory.mktemp("two_sites")
    one = write_corpus(tmp_path / "site1", n=120, seed=5)
    two = write_corpus(tmp_path / "site2", n=120, seed=9)
    out = train(
        [CorpusSpec(str(one), "dir"), CorpusSpec(str(two), "dir")],
        tmp_path / "model",
        FeatureConfig(n_bits=14),
        TrainConfig(cv_folds=3, loss="sgd_log"),
        exact=True,
        n_jobs=1,
        progress=False,
        new_site=True,
    )
    return load_artifact(out)


def test_training_records_new_site_points_and_policies_use_them(two_site_model: Artifact) -> None:
    art = two_site_model
    assert art.site_reports == 0
    assert {p.name for p in art.new_site_operating_points} == {p.name for p in art.operating_points}
    assert set(art.manifest["new_site_validation"]["sites"]) == {"site1", "site2"}
    assert art.policy_points == art.new_site_operating_points
    # Once retrained on the site's own reports, the model's own out-of-fold points apply.
    retrained = replace(art, manifest={**art.manifest, "site_reports": 250})
    assert retrained.policy_points == retrained.operating_points
    # A model trained without them falls back to its own points.
    plain = replace(art, manifest={k: v for k, v in art.manifest.items() if k != "new_site_operating_points"})
    assert plain.policy_points == plain.operating_points
    # The default policy's TAG threshold comes from the new-site points.
    tag = Policy().settings.resolve(art.policy_points)[-1]
    new_tag = next(p.threshold for p in art.new_site_operating_points if p.target_fpr == 0.01)
    assert tag[1] == new_tag


def test_training_records_text_only_points_and_text_without_headers_uses_them(
    two_site_model: Artifact,
) -> None:
    """The same left-out fits score each site's mail as text alone (training.text_only); input with no
    header block resolves its thresholds against those points, mail with headers against the others."""
    art = two_site_model
    text = art.info.new_site_text_only_points
    assert {p.name for p in text} == {p.name for p in art.new_site_operating_points}
    assert set(art.manifest["new_site_validation"]["text_only_sites"]) == {"site1", "site2"}
    # The text-only scores are the whole messages' left-out fits on other rows: other thresholds.
    assert [p.threshold for p in text] != [p.threshold for p in art.new_site_operating_points]
    assert art.points_for(True) == art.policy_points and art.points_for(False) == text
    without = {k: v for k, v in art.manifest.items() if k != "new_site_text_only_operating_points"}
    assert replace(art, manifest=without).points_for(False) == art.policy_points


def test_text_without_headers_is_judged_by_the_text_only_points(tmp_path: Path) -> None:
    """A verdict on text with no header block takes its thresholds from the text-only points: here
    the whole-message points would reject everything and the text-only points nothing."""
    from spamgate.model.artifact import write_artifact
    from spamgate.model.bundled import bundled_model_path
    from spamgate.service.policy.settings import Action
    from spamgate.service.scoring.model_holder import ModelHolder
    from spamgate.service.scoring.verdict import Request, build_verdict
    from tests.mail import make

    art = load_artifact(bundled_model_path())
    strict = [{**p.to_dict(), "threshold": 1e-9} for p in art.new_site_operating_points]
    lenient = [{**p.to_dict(), "threshold": 1.0} for p in art.new_site_operating_points]
    manifest = {
        **art.manifest,
        "new_site_operating_points": strict,
        "new_site_text_only_operating_points": lenient,
    }
    holder = ModelHolder()
    holder.load(write_artifact(tmp_path / "m", manifest, art.features, art.model))
    body = "Hello Bob,\n\nthe report is attached. See you on Monday at the office.\n\nAlice\n"
    with_headers = build_verdict(Request(message=make(body=body)), holder, Policy(), 1 << 24)
    assert with_headers.action == Action.REJECT
    text = build_verdict(Request(message=body.encode()), holder, Policy(), 1 << 24)
    assert text.action == Action.DELIVER and text.spam_probability < 1.0


def test_policy_check_lists_the_thresholds_for_text_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spamgate.service.cli.main import main

    policy = tmp_path / "p.toml"
    policy.write_text('name = "site"\n')
    assert main(["policy", "check", str(policy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    text = [ln for ln in lines if "text with no header block" in ln]
    assert [ln.split()[0] for ln in text] == ["REJECT", "REROUTE", "TAG"]
