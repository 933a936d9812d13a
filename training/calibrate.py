"""Fitting the margin→probability map on held-out (out-of-fold) margins."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from spamgate.model.calibration import CALIBRATION_KINDS, Calibration


def fit_calibration(margins: np.ndarray, y: np.ndarray, kind: str = "platt") -> Calibration:
    """Fit Platt scaling or an isotonic table on margins the model did not train on."""
    if kind not in CALIBRATION_KINDS:
        raise ValueError(f"calibration must be one of {CALIBRATION_KINDS}, got {kind!r}")
    m = np.asarray(margins, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y)
    if kind == "platt":
        lr = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
        lr.fit(m, y)
        return Calibration.platt(float(lr.coef_[0, 0]), float(lr.intercept_[0]))
    iso = IsotonicRegression(y_min=1e-4, y_max=1 - 1e-4, out_of_bounds="clip", increasing=True)
    iso.fit(m.ravel(), y)
    return Calibration.isotonic(iso.X_thresholds_, iso.y_thresholds_)
