"""Thin evidence (model.evidence): a message the model has seen almost nothing of lands near the prior."""

from __future__ import annotations

import numpy as np
import pytest

from spamgate.model.artifact import load_artifact
from spamgate.model.bundled import bundled_model_path
from spamgate.model.evidence import DEFAULT_RULE, THIN_EVIDENCE, EvidenceRule
from spamgate.model.scoring import Scorer
from spamgate.service.policy.policy_file import PolicyHolder
from spamgate.service.policy.settings import Action
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Request, build_verdict
from tests.mail import make

# A two-word body, and a list-membership reminder that is only a password (what a list server
# sends when its reminder template is empty). Each has fewer than DEFAULT_RULE.min_content
# subject/body tokens the bundled model was trained on.
TWO_WORDS = make({"Subject": "test"}, body="test again\n")
REMINDER = make(
    {
        "Subject": "membership reminder",
        "From": "users-request@lists.example.net",
        "List-Id": "Site-wide users list <users.lists.example.net>",
        "Precedence": "bulk",
        "X-List-Administrivia": "yes",
    },
    body="kairoo5e\n",
)


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(load_artifact(bundled_model_path()))


def _day0_tag_point(scorer: Scorer) -> float:
    """The TAG threshold a fresh install's default policy resolves against (FPR 1%, new-site)."""
    point = next(p for p in scorer.artifact.policy_points if abs(p.target_fpr - 0.01) < 1e-12)
    return point.threshold


def test_rule_validates_its_parameters() -> None:
    for bad in ({"min_content": -1}, {"low": 0.6}, {"high": 0.4}, {"low": -0.1}, {"high": 1.5}):
        with pytest.raises(ValueError):
            EvidenceRule(**bad)


def test_squeeze_keeps_order_and_stays_in_the_band() -> None:
    rule = EvidenceRule(min_content=4, low=0.1, high=0.9)
    ps = np.linspace(0.0, 1.0, 11)
    thin = [rule.squeeze(float(p), 3) for p in ps]
    assert thin == sorted(thin) and min(thin) == pytest.approx(0.1) and max(thin) == pytest.approx(0.9)
    assert [rule.squeeze(float(p), 4) for p in ps] == [float(p) for p in ps]  # enough evidence: unchanged
    assert EvidenceRule(min_content=0).squeeze(0.999, 0) == 0.999  # K = 0 turns it off


def test_content_evidence_counts_distinct_seen_content_columns() -> None:
    coef = np.zeros(16, dtype=np.float32)
    coef[[1, 2, 5]] = 0.3
    tokens = ["b:one", "b:one-again", "s:two", "hn:received", "u:example.org", "b:unseen"]
    cols = np.array([1, 1, 2, 5, 5, 7])
    # b:one and b:one-again share column 1; hn: is not content; u: shares column 5 with hn:.
    assert DEFAULT_RULE.content_evidence(tokens, cols, coef) == 3


@pytest.mark.parametrize("raw", [TWO_WORDS, REMINDER], ids=["two-words", "membership-reminder"])
def test_thin_messages_land_in_the_middle_band_below_the_day0_tag_point(scorer: Scorer, raw: bytes) -> None:
    s = scorer.score(raw)
    assert s.thin and s.content_evidence < DEFAULT_RULE.min_content
    assert DEFAULT_RULE.low <= s.probability <= DEFAULT_RULE.high
    assert s.probability < _day0_tag_point(scorer)
    # The batch path (evaluate, benches) gives the same probability.
    assert scorer.probabilities([raw])[0] == pytest.approx(s.probability, abs=1e-6)


# Thin mail the bundled model, without the rule, scores over its own day-0 TAG point: a note whose
# subject and body are both "hi" words (0.999 without the rule) and a two-word body with no Subject
# (0.977). TWO_WORDS and REMINDER above happen to score 0.50 and 0.06 without it, so they alone
# would not notice the rule gone or its band widened (audit, seventh session).
HARD_THIN = {
    "hi-there": b"From: a@example.org\nTo: b@example.net\nSubject: hi\n\nhi there\n",
    "no-subject": b"From: a@example.org\nTo: b@example.net\n\ntest test\n",
}


@pytest.mark.parametrize("raw", list(HARD_THIN.values()), ids=list(HARD_THIN))
def test_thin_mail_the_intercept_would_tag_stays_below_the_day0_tag_point(scorer: Scorer, raw: bytes) -> None:
    from spamgate.model.evidence import OFF

    tag = _day0_tag_point(scorer)
    assert Scorer(scorer.artifact, evidence=OFF).score(raw).probability >= tag  # a hard case, still
    s = scorer.score(raw)
    assert s.thin and DEFAULT_RULE.low <= s.probability <= DEFAULT_RULE.high < tag


def test_ordinary_mail_is_not_thin(scorer: Scorer) -> None:
    s = scorer.score(make())
    assert not s.thin and s.content_evidence >= DEFAULT_RULE.min_content


def test_thin_verdict_says_why_and_delivers() -> None:
    holder = ModelHolder()
    holder.load(bundled_model_path())
    v = build_verdict(Request(message=TWO_WORDS), holder, PolicyHolder(None).current(), 1 << 24)
    assert v.action == Action.DELIVER
    assert any(r.name == THIN_EVIDENCE and r.kind == "evidence" for r in v.reasons)
    assert DEFAULT_RULE.low <= v.spam_probability <= DEFAULT_RULE.high


def test_rule_is_off_for_a_model_trained_at_the_site(scorer: Scorer) -> None:
    """Own-site models keep their probabilities (on S2 the rule cost 2.4 points of catch at 0.1%)."""
    from dataclasses import replace

    art = scorer.artifact
    assert art.at_new_site
    reported = replace(art, manifest={**art.manifest, "site_reports": 1000})
    own = Scorer(reported)
    assert not reported.at_new_site and own.evidence.min_content == 0
    s = own.score(TWO_WORDS)
    assert not s.thin and s.probability == pytest.approx(
        float(art.model.calibration.probability(np.array([s.margin]))[0])
    )
    assert Scorer(reported, evidence=DEFAULT_RULE).score(TWO_WORDS).thin  # explicit rule wins
