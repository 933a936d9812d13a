"""Misbehaving stages for tests of the scoring budget, installed in scoring workers.

A function here is given to ``start_server(scoring_init=…)`` / ``ScoringPool(init=…)``
and runs in each worker process before it serves, so a test can make one stage of
scoring spin without touching the code the product runs.
"""

from __future__ import annotations

import time

# A message holding this spins the model for SPIN_SECONDS of CPU before scoring it.
SPIN_MARKER = b"X-Test-Spin-Stage: yes"
SPIN_SECONDS = 10.0
# A message holding this makes the worker process die mid-message.
CRASH_MARKER = b"X-Test-Crash-Stage: yes"


def misbehave_on_marker() -> None:
    """Wrap ``Scorer.score``: spin on ``SPIN_MARKER``, die on ``CRASH_MARKER``."""
    import os

    import spamgate.model.scoring as scoring

    original = scoring.Scorer.score

    def score(self: scoring.Scorer, raw: bytes, top_k: int = 8) -> scoring.Score:
        if SPIN_MARKER in raw:
            end = time.process_time() + SPIN_SECONDS
            while time.process_time() < end:
                pass
        if CRASH_MARKER in raw:
            os._exit(3)
        return original(self, raw, top_k)

    scoring.Scorer.score = score  # type: ignore[method-assign]
