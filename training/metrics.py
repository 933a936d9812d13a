"""Filter-quality measures, as the TREC spam track and mail admins use them.

Convention: label 1 = spam (positive), 0 = ham. FPR = ham marked spam / ham;
FNR = spam missed / spam; catch = 1 - FNR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from spamgate.model.manifest import OperatingPoint

# Target false-positive rates an operating point is computed for, each named by its rate (one
# vocabulary: until v1.1 three were named aggressive/balanced/lenient, the words that name policy
# presets, which made "balanced" mean a point in one place and a set of thresholds in another).
# Policy FPR thresholds resolve to the nearest point at or below the target.
TARGET_FPRS: tuple[tuple[str, float], ...] = (
    ("fpr_5%", 0.05),
    ("fpr_2%", 0.02),
    ("fpr_1%", 0.01),
    ("fpr_0.5%", 0.005),
    ("fpr_0.2%", 0.002),
    ("fpr_0.1%", 0.001),
    ("fpr_0.05%", 0.0005),
    ("fpr_0.01%", 0.0001),
)


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, scores))


def one_minus_roca_pct(y: np.ndarray, scores: np.ndarray) -> float:
    """TREC's 1-ROCA%: 100·(1 − area under the ROC curve)."""
    return 100.0 * (1.0 - roc_auc(y, scores))


def rates_at(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """FPR, FNR and catch when scores >= threshold are called spam."""
    y = np.asarray(y)
    pred = np.asarray(scores) >= threshold
    ham, spam = y == 0, y == 1
    fpr = float(pred[ham].mean()) if ham.any() else float("nan")
    fnr = float((~pred[spam]).mean()) if spam.any() else float("nan")
    return {
        "threshold": float(threshold),
        "fpr": fpr,
        "fnr": fnr,
        "catch": 1.0 - fnr,
        "false_positives": int(pred[ham].sum()),
        "false_negatives": int((~pred[spam]).sum()),
    }


def threshold_for_fpr(y: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Lowest threshold whose FPR on this data is at most ``target``.

    With n ham, at most floor(target·n) ham may score at or above it; the
    threshold sits just above the next-highest ham score.
    """
    ham = np.sort(np.asarray(scores)[np.asarray(y) == 0])[::-1]
    if len(ham) == 0:
        return 0.5
    k = int(np.floor(target * len(ham) + 1e-9))
    if k >= len(ham):
        return float(ham[-1])
    return float(np.nextafter(ham[k], np.inf))


def operating_points(y: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    """One operating point per target FPR, with what it measured on this data."""
    y = np.asarray(y)
    out = []
    for name, target in TARGET_FPRS:
        t = threshold_for_fpr(y, scores, target)
        point = {
            "name": name,
            "target_fpr": target,
            **rates_at(y, scores, t),
            "n_ham": int((y == 0).sum()),
            "n_spam": int((y == 1).sum()),
        }
        out.append(point)
    return out


def reliability_table(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per probability bin: count, mean predicted probability, observed spam rate."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        out.append(
            {
                "bin_low": float(edges[b]),
                "bin_high": float(edges[b + 1]),
                "count": n,
                "mean_predicted": float(p[mask].mean()) if n else float("nan"),
                "observed_spam_rate": float(y[mask].mean()) if n else float("nan"),
            }
        )
    return out


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean |predicted − observed| over equal-width bins."""
    table = reliability_table(y, probs, bins)
    n = sum(r["count"] for r in table)
    if n == 0:
        return float("nan")
    return float(
        sum(r["count"] * abs(r["mean_predicted"] - r["observed_spam_rate"]) for r in table if r["count"]) / n
    )


def roc_points(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) arrays of the ROC curve."""
    fpr, tpr, _ = roc_curve(y, scores)
    return fpr, tpr


def summary(
    y: np.ndarray, probs: np.ndarray, points: Sequence[OperatingPoint] | None = None
) -> dict[str, Any]:
    """Everything a report shows for one labelled set.

    ``points`` are operating points from validation data (the model's own);
    their thresholds are applied here, so the FPR/FNR shown are honest
    held-out figures, not re-tuned on this data.
    """
    y = np.asarray(y)
    out: dict[str, Any] = {
        "n": len(y),
        "n_ham": int((y == 0).sum()),
        "n_spam": int((y == 1).sum()),
        "roc_auc": roc_auc(y, probs),
        "one_minus_roca_pct": one_minus_roca_pct(y, probs),
        "ece": expected_calibration_error(y, probs),
        "reliability": reliability_table(y, probs),
        "at_0.5": rates_at(y, probs, 0.5),
    }
    if points:
        out["at_operating_points"] = [
            {"name": p.name, "target_fpr": p.target_fpr, **rates_at(y, probs, p.threshold)}
            for p in points
        ]
    out["catch_at_fpr"] = {
        str(t): rates_at(y, probs, threshold_for_fpr(y, probs, t))["catch"] for _, t in TARGET_FPRS
    }
    return out
