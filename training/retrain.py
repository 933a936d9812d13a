"""Retrain with an evaluation gate: a candidate ships only if it is not worse.

Data: the base corpora plus the feedback store (reports come last in time).
The most recent ``holdout`` fraction of that stream is held back; the
candidate trains on the rest; candidate and active model are scored on the
held-back mail; the candidate is promoted only if its 1-ROCA% and its FPR at
the balanced operating point are within the tolerances of the active
model's. The decision and both sets of figures are written into the
candidate's manifest and a report (JSON + ROC plot of both).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.artifact import Artifact, LinearModel, write_artifact
from model.features import FeatureConfig, FeatureExtractor
from training import metrics
from training.corpora import LabelledMessage
from training.evaluate import plot_roc
from training.featurize import featurize
from training.fit import SGD_LOSSES, TrainConfig, fit
from training.train import build_manifest, in_time_order, new_version


@dataclass(frozen=True)
class GateConfig:
    """How much worse a candidate may be and still ship.

    roca_tolerance: relative slack on 1-ROCA% (0.05 = 5% worse allowed).
    fpr_tolerance: absolute slack on FPR at the balanced point.
    holdout: fraction of the newest mail held back for the comparison.
    """

    roca_tolerance: float = 0.05
    fpr_tolerance: float = 0.0005
    holdout: float = 0.15

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        if self.roca_tolerance < 0 or self.fpr_tolerance < 0:
            raise ValueError("tolerances must be >= 0")


def corpus_summary(name: str, messages: list[LabelledMessage]) -> dict[str, Any]:
    """What a manifest records about one training source (counts and an order-free content hash)."""
    digests = sorted(f"{m.label}:{hashlib.sha256(m.raw).hexdigest()}" for m in messages)
    return {
        "name": name,
        "messages": len(messages),
        "ham": sum(1 for m in messages if m.label == 0),
        "spam": sum(1 for m in messages if m.label == 1),
        "content_sha256": hashlib.sha256("\n".join(digests).encode()).hexdigest(),
    }


def after(base: list[LabelledMessage], later: list[LabelledMessage]) -> list[LabelledMessage]:
    """``later`` (e.g. feedback, in report order) placed in time after every message of ``base``."""
    start = max((m.order or 0.0 for m in base), default=0.0)
    return [replace(m, order=start + (m.order or 0.0)) for m in later]


def _figures(y: np.ndarray, p: np.ndarray, points: list[dict[str, Any]]) -> dict[str, Any]:
    # The FPR-0.1% point (named "balanced" in manifests before v1.1: matched by its target).
    bal = next((pt for pt in points if abs(float(pt.get("target_fpr", -1)) - 0.001) < 1e-12), None)
    at = metrics.rates_at(y, p, bal["threshold"]) if bal else {"fpr": float("nan"), "catch": float("nan")}
    return {
        "one_minus_roca_pct": metrics.one_minus_roca_pct(y, p),
        "balanced_fpr": at["fpr"],
        "balanced_catch": at["catch"],
        "n": len(y),
    }


def retrain(
    messages: list[LabelledMessage],
    active: Artifact | None,
    out_root: Path,
    feature_cfg: FeatureConfig,
    train_cfg: TrainConfig,
    gate: GateConfig,
    corpora: list[dict[str, Any]],
    warm_start: bool = False,
    n_jobs: int = -1,
    progress: bool = True,
    command: str = "",
) -> tuple[Path, dict[str, Any]]:
    """Train a candidate, gate it against ``active``; returns (candidate dir, decision)."""
    data = in_time_order(featurize(messages, feature_cfg, n_jobs=n_jobs, progress=progress))
    n_hold = max(1, round(len(data.y) * gate.holdout))
    train_idx, hold_idx = np.arange(len(data.y) - n_hold), np.arange(len(data.y) - n_hold, len(data.y))
    if len(np.unique(data.y[hold_idx])) < 2:
        raise ValueError("the held-back slice needs both spam and ham; add data or raise --holdout")
    tr, ho = data.subset(train_idx), data.subset(hold_idx)
    init = None
    warm_note = ""
    if warm_start:
        # Only SGD continues from given weights; the exact solvers (the default SVM) reach the same
        # optimum from any start, so a warm start would only be a promise not kept.
        if train_cfg.loss not in SGD_LOSSES:
            warm_note = f"warm start ignored: loss {train_cfg.loss!r} is solved exactly from scratch"
        elif active is None or active.features != feature_cfg:
            warm_note = "warm start ignored: no active model with the same features"
        else:
            init = (active.model.coef, active.model.intercept)
    t0 = time.perf_counter()
    result = fit(tr.X, tr.y, train_cfg, init=init)
    cand_p = result.model.calibration.probability(result.model.margin(ho.X))
    cand = _figures(ho.y, cand_p, result.operating_points)
    decision: dict[str, Any] = {
        "candidate": cand,
        "holdout_messages": int(n_hold),
        **({"warm_start": warm_note} if warm_note else {}),
        "tolerances": {"roca_relative": gate.roca_tolerance, "fpr_absolute": gate.fpr_tolerance},
    }
    curves = [("candidate", ho.y, cand_p)]
    if active is None:
        decision.update({"promote": True, "why": "no active model"})
    else:
        act_p = _score_active(active, ho.sources, messages)
        act = _figures(ho.y, act_p, active.operating_points)
        decision["active"] = {**act, "version": active.version}
        curves.append((f"active {active.version}", ho.y, act_p))
        roca_ok = cand["one_minus_roca_pct"] <= act["one_minus_roca_pct"] * (1 + gate.roca_tolerance) + 1e-9
        fpr_ok = cand["balanced_fpr"] <= act["balanced_fpr"] + gate.fpr_tolerance
        decision["promote"] = bool(roca_ok and fpr_ok)
        decision["why"] = (
            "candidate not worse than active within tolerances"
            if decision["promote"]
            else "; ".join(
                w
                for w, bad in (
                    (
                        f"1-ROCA% {cand['one_minus_roca_pct']:.4f} > active {act['one_minus_roca_pct']:.4f}",
                        not roca_ok,
                    ),
                    (
                        f"balanced FPR {cand['balanced_fpr']:.4%} > active {act['balanced_fpr']:.4%}",
                        not fpr_ok,
                    ),
                )
                if bad
            )
        )
    version = new_version(tr.content_sha256)
    reports = sum(int(c.get("messages", 0)) for c in corpora if str(c.get("name", "")).startswith("feedback"))
    manifest = build_manifest(
        version, result, train_cfg, corpora, tr.content_sha256, len(tr.y), command, site_reports=reports
    )
    manifest["training"]["warm_start_from"] = active.version if init is not None and active else None
    manifest["training"]["fit_seconds_total"] = round(time.perf_counter() - t0, 2)
    manifest["gate"] = decision
    target = write_artifact(Path(out_root) / version, manifest, feature_cfg, result.model)
    report_dir = Path(out_root) / ".reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{version}.json").write_text(json.dumps(decision, indent=1) + "\n")
    plot_roc(curves, report_dir / f"{version}.png", "Retrain gate: candidate vs active on held-back mail")
    decision["report"] = str(report_dir / f"{version}.json")
    decision["roc_plot"] = str(report_dir / f"{version}.png")
    return target, decision


def _score_active(active: Artifact, hold_sources: list[str], messages: list[LabelledMessage]) -> np.ndarray:
    """The active model's probabilities on the held-back mail, with its own feature pipeline."""
    by_source = {m.source: m.raw for m in messages}
    fx = FeatureExtractor(active.features)
    rows = fx.transform([by_source[s] for s in hold_sources])
    model: LinearModel = active.model
    return model.calibration.probability(model.margin(rows))
