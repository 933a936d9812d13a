"""Day 0 in any language: the bundled model and the default policy deliver ordinary mail.

Every hand-written ordinary message of tests/multilingual (issue 14) goes through the verdict path
exactly as on a fresh install (bundled model, built-in "balanced" policy) and must be DELIVERed.

Known failure, kept visible rather than tuned away: ham/es/01-business.eml, p = 0.975 against the
new-site TAG point 0.971 (models 20261130-164652-7e51f681, 20261130-215356-7e51f681,
20261130-230845-7e51f681, 20261201-031853-7e51f681, 20261201-035724-7e51f681,
20261201-044003-7e51f681 and 20261201-061831-7e51f681, the same or nearly the same weights). The
model has almost no evidence about it either way (margin 0.63, of which 0.53 is the intercept: `python
bench/multilingual.py`), so its probability is the training corpora's prior, which sits just below
the TAG point. Pulling such mail towards p = 0.5
by its unseen-token share delivered it but caught 6 of the 24 hand-written spam instead of 19
(scratch run), so it is not done; the site's reports are the remedy. A recipe chosen for new sites
(BENCHMARKS.md, "A day-0 recipe"; shipped for one build, 20261201-055830-7e51f681) tagged it and
three more (fr/02, fr/06, tr/04) at its own TAG point 0.9807. The marker is strict: when the
message is delivered, the test says so and the marker must go.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spamgate.service.policy.policy_file import PolicyHolder
from spamgate.service.policy.settings import Action
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Request, build_verdict

SET = Path(__file__).resolve().parent / "multilingual"
HAM = sorted((SET / "ham").glob("*/*.eml"))
KNOWN_TAGGED = {"es/01-business.eml"}


def _id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


def test_the_set_is_there() -> None:
    assert len(HAM) >= 80


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="known: p at the prior, see docstring"))
        if _id(p) in KNOWN_TAGGED
        else p
        for p in HAM
    ],
    ids=_id,
)
def test_bundled_model_delivers_ordinary_mail(bundled_holder: ModelHolder, path: Path) -> None:
    policy = PolicyHolder(None).current()
    v = build_verdict(Request(message=path.read_bytes()), bundled_holder, policy, 1 << 24)
    assert v.action == Action.DELIVER, (v.spam_probability, v.threshold, [r.name for r in v.reasons[:4]])
