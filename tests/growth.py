"""The one growth check of the pathological-input guards (the only timed tests the project keeps).

time(2n) / time(n), the minimum of interleaved repeats, against a generous bound: a linear path gives
about 2, a quadratic one 4. Used by tests/test_pathological.py (parsing and scoring) and
tests/test_policy_attacks.py (policy files).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

MAX_GROWTH = 3.0
# Below this a time is timer and scheduler noise, not growth: ratios use it as the smallest time.
NOISE_S = 0.005


def seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def assert_linear(run: Callable[[int], object], n: int, rounds: int = 3) -> None:
    """time(2n) / time(n) <= MAX_GROWTH: the minimum of interleaved runs, tried twice (load spikes)."""
    for _attempt in range(2):
        small, large = [], []
        for _ in range(rounds):
            small.append(seconds(lambda: run(n)))
            large.append(seconds(lambda: run(2 * n)))
        ratio = min(large) / max(min(small), NOISE_S)
        if ratio <= MAX_GROWTH:
            return
    pytest.fail(
        f"time({2 * n}) / time({n}) = {min(large):.4f} / {min(small):.4f} s = {ratio:.1f} > {MAX_GROWTH}"
    )
