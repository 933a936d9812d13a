"""Margin → probability maps stored in an artifact as plain numbers.

Two kinds, both data (never code): Platt scaling ``sigmoid(a*m + b)`` and an
isotonic step table interpolated with ``numpy.interp``. Fitting lives in
``training.calibrate``; applying lives here because serving needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CALIBRATION_KINDS = ("platt", "isotonic")


@dataclass(frozen=True)
class Calibration:
    """A fitted margin→probability map.

    kind: ``platt`` uses ``params = [a, b]``; ``isotonic`` uses the
    breakpoints ``x`` (increasing margins) and ``y`` (probabilities).
    """

    kind: str
    params: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in CALIBRATION_KINDS:
            raise ValueError(f"unknown calibration kind {self.kind!r}")
        if self.kind == "platt" and self.params.shape != (2,):
            raise ValueError("platt calibration needs params [a, b]")
        if self.kind == "isotonic" and (self.x.shape != self.y.shape or self.x.ndim != 1 or len(self.x) < 2):
            raise ValueError("isotonic calibration needs equal-length x and y with 2+ points")
        for arr in (self.params, self.x, self.y):
            if not np.all(np.isfinite(arr)):
                raise ValueError("calibration holds non-finite numbers")
        # np.interp needs rising breakpoints and returns whatever y holds: a table with falling x or
        # y outside [0, 1] loaded and answered p = 7.0 (tests/test_artifact_adversarial.py). A fitted
        # table (training.calibrate: y clipped to [1e-4, 1 - 1e-4]) always passes.
        if self.kind == "isotonic" and (np.any(np.diff(self.x) < 0) or np.any((self.y < 0) | (self.y > 1))):
            raise ValueError("isotonic calibration needs rising x and y in [0, 1]")

    @classmethod
    def platt(cls, a: float, b: float) -> Calibration:
        return cls("platt", np.array([a, b], dtype=np.float64), np.zeros(0), np.zeros(0))

    @classmethod
    def isotonic(cls, x: np.ndarray, y: np.ndarray) -> Calibration:
        return cls("isotonic", np.zeros(0), np.asarray(x, np.float64), np.asarray(y, np.float64))

    def probability(self, margins: np.ndarray) -> np.ndarray:
        """Calibrated spam probability for each margin."""
        m = np.asarray(margins, dtype=np.float64)
        if self.kind == "platt":
            z = np.clip(self.params[0] * m + self.params[1], -500, 500)
            return 1.0 / (1.0 + np.exp(-z))
        return np.interp(m, self.x, self.y)
