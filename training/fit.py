"""Fit the linear model, calibrate it out-of-fold, compute operating points.

Calibration and operating points must come from margins the model did not
train on. Following scikit-learn's ``CalibratedClassifierCV(ensemble=False)``
we fit K models on K−1 folds to get out-of-fold margins for every training
message, fit the calibration and thresholds on those, and ship one final
model fitted on all the data. Folds are contiguous blocks in time order, so
out-of-fold margins are close to what a deployed model sees.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from spamgate.model.artifact import LinearModel
from spamgate.model.config_fields import check_field_types
from spamgate.training import metrics
from spamgate.training.calibrate import fit_calibration
from spamgate.training.corpora import CorpusError

LOSSES = ("svm", "log", "sgd_log", "modified_huber")
SGD_LOSSES = ("sgd_log", "modified_huber")


@dataclass(frozen=True)
class TrainConfig:
    """Parameters of fitting (recorded in every artifact).

    loss: ``svm`` → linear SVM, squared hinge loss (liblinear's dual coordinate
        descent: exact optimum, deterministic); ``log`` → logistic regression
        (liblinear, exact optimum); ``sgd_log`` / ``modified_huber`` → SGD with
        that loss (fast, approximate, warm-startable).
    C: inverse L2 regularisation strength (for SGD, alpha = 1 / (C · n)).
    class_weight: None or ``balanced``.
    calibration: ``platt`` or ``isotonic``.
    cv_folds: folds for out-of-fold calibration margins.
    cv_shuffle: shuffle before folding (for mixed corpora without one time
        line; a single corpus in time order keeps contiguous folds).
    seed: random seed (SGD shuffling, liblinear's coordinate order, fold
        shuffling). The liblinear losses (``svm``, ``log``) reach the same
        optimum whatever the seed, up to the solver's tolerance; the seed
        makes a fit reproducible bit for bit.
    average: SGD only: return the average of the iterates (Polyak-Ruppert)
        rather than the last one.
    """

    # A linear SVM (squared hinge, liblinear's dual coordinate descent) replaced averaged SGD on
    # log loss in stage 7 (BENCHMARKS.md; bench/results/ablation_stage7.json). 1-ROCA%, averaged
    # SGD C=30 → SVM C=1, both on the sg-features-7 windows:
    #   S1 0.0143 → 0.0090 (catch at 0.1% FPR 96.93% → 98.41%), csdmc2010 0.0125 → 0.0088,
    #   Ling-Spam 0.0305 → 0.0217, Enron-Spam 0.0875 → 0.0488; S2 (time split) 0.0260 → 0.0277,
    #   where nearly all of either figure is two mislabelled "ham" (see BENCHMARKS.md) and
    #   catch at 0.1% FPR ties (99.43% / 99.38%).
    # Averaged SGD also moved S1 by ±0.004 with nothing but its shuffling seed (scratch runs,
    # seeds 0-3), so SGD-era comparisons on S1 sat inside that noise; the dual solver converges
    # to the one optimum (seeds change weights by ~1e-4 relative), and S2's six fits (five folds
    # and the final one) took 15 s instead of 22 s. Logistic loss solved exactly is too slow for
    # the 60 s budget: liblinear's primal took 109 s for one S2 fit with byte 4-grams (stage 0),
    # its dual 59 s (scratch run); that is why the SGD era used SGD.
    loss: str = "svm"
    # SVM C = 0.3 / 1 / 3 / 10 (stage 7), 1-ROCA%: S1 0.0132 / 0.0090 / 0.0079 / 0.0076,
    # S2 0.0270 / 0.0277 / 0.0282 / 0.0287, csdmc2010 0.0116 / 0.0088 / 0.0083 / 0.0081,
    # Ling-Spam 0.0217 / 0.0217 / 0.0210 / 0.0210, Enron-Spam 0.0506 / 0.0488 / 0.0494 / 0.0497.
    # The time split leans to small C, the other corpora to large, by less than S2's two
    # mislabelled messages move it; C=1 sits between and is the best on Enron-Spam.
    C: float = 1.0
    class_weight: str | None = None
    calibration: str = "platt"
    cv_folds: int = 5
    cv_shuffle: bool = False
    seed: int = 0
    # (SGD losses only.) Averaged SGD: S1 1-ROCA% 0.0352 → 0.0300, S2 0.0349 → 0.0346 and S2's
    # balanced-point FPR 0.142% → 0.057% on its own (stage 4); with C=30 and the heavier byte
    # n-gram block it was the largest single gain of the SGD era (S1 0.0245 → 0.0186 for
    # C30_g1.5 → avg_C30_g1.5). It loses on header-less Enron-Spam (0.0605 → 0.0734; stage 5).
    average: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        if self.calibration not in ("platt", "isotonic"):
            raise ValueError(f"calibration must be 'platt' or 'isotonic', got {self.calibration!r}")
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be >= 2, got {self.cv_folds}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict`` (a manifest's ``train_config``): unknown keys and values of the
        wrong type are a ``TypeError`` naming the field (``model.config_fields``), not a fit that
        fails half-way (``cv_folds`` 2.5, ``seed`` "x") or runs with ``C`` infinite."""
        check_field_types(cls, data)
        return cls(**data)


def _fit_linear(
    X: sp.csr_matrix,
    y: np.ndarray,
    cfg: TrainConfig,
    init: tuple[np.ndarray, float] | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    if len(np.unique(y)) < 2:
        raise CorpusError("training data needs both spam and ham")
    if cfg.loss == "svm":
        # dual=True: one variable per message, not per column (12,500 vs 2^20 here), the fast
        # side when columns far outnumber messages.
        # random_state: liblinear visits the dual coordinates in a random order; seeded, a fit is
        # reproducible bit for bit (unseeded, weights differed by ~1e-4 relative between runs) as
        # long as no other liblinear fit runs in the same process (see _parallel_backend).
        clf: Any = LinearSVC(
            C=cfg.C,
            loss="squared_hinge",
            dual=True,
            class_weight=cfg.class_weight,
            max_iter=5000,
            tol=1e-4,
            random_state=cfg.seed,
        )
    elif cfg.loss == "log":
        clf = LogisticRegression(
            C=cfg.C,
            solver="liblinear",
            class_weight=cfg.class_weight,
            max_iter=1000,
            tol=1e-4,
            random_state=cfg.seed,
        )
    else:
        clf = SGDClassifier(
            loss="log_loss" if cfg.loss == "sgd_log" else "modified_huber",
            alpha=1.0 / (cfg.C * X.shape[0]),
            class_weight=cfg.class_weight,
            max_iter=50,
            tol=1e-4,
            random_state=cfg.seed,
            average=cfg.average,
        )
    if init is not None and cfg.loss in SGD_LOSSES:
        # Incremental update: start SGD from the active model's weights.
        clf.fit(
            X,
            y,
            coef_init=init[0].astype(np.float64).reshape(1, -1),
            intercept_init=np.array([init[1]]),
            sample_weight=sample_weight,
        )
    else:
        clf.fit(X, y, sample_weight=sample_weight)
    return clf.coef_.ravel().astype(np.float32), float(clf.intercept_[0])


def _parallel_backend(cfg: TrainConfig) -> str:
    """Threads for SGD, processes for liblinear (``svm``, ``log``).

    Both release the GIL, but liblinear draws its coordinate order from one
    C-level generator shared by the whole process (scikit-learn issue #8410),
    so two liblinear fits on threads interleave their draws: on one training
    set the weights of four runs differed by up to 1e-5, and a seeded fit was
    not reproducible. In processes each fit has its own generator and the
    weights are the same bit for bit. The price on S2's train half (five
    folds and the final fit, 2 cores): 18.6-20.5 s in processes against
    14.3-18.2 s on threads and 24.4 s one after another. SGD keeps a
    generator per estimator, so it stays on threads.
    """
    return "threads" if cfg.loss in SGD_LOSSES else "processes"


@dataclass
class FitResult:
    """The fitted model and what validation measured about it."""

    model: LinearModel
    operating_points: list[dict[str, Any]]
    validation: dict[str, Any]
    train_seconds: float


def fit(
    X: sp.csr_matrix,
    y: np.ndarray,
    cfg: TrainConfig,
    init: tuple[np.ndarray, float] | None = None,
    n_jobs: int = -1,
    sample_weight: np.ndarray | None = None,
) -> FitResult:
    """Fit on rows in time order (oldest first); see the module docstring.

    ``init`` (coef, intercept) warm-starts the final SGD fit from an earlier
    model's weights (an incremental update); the out-of-fold fits start cold
    so calibration is not flattered by weights that saw the validation folds.
    The exact solvers (``svm``, ``log``) have no warm start and ignore it:
    their optimum does not depend on where they start.

    ``sample_weight`` (one per row) scales each row's loss: how a retrain
    makes a site's few reports count against a large base corpus
    (``training.retrain.report_weight``). Calibration and operating points
    are fitted on the out-of-fold margins unweighted: they must describe
    the mail as it is, not as it was weighted.

    The out-of-fold fits and the final fit are independent, so they run on
    ``n_jobs`` workers: S2's six SGD fits took 43 s one after another on this
    2-core machine. The result does not depend on ``n_jobs``; see
    ``_parallel_backend`` for why liblinear's fits run in processes.
    """
    start = time.perf_counter()
    y = np.asarray(y)
    if len(np.unique(y)) < 2:  # before KFold: one message made KFold(n_splits=1) raise sklearn's ValueError
        raise CorpusError("training data needs both spam and ham")
    oof = np.zeros(len(y), dtype=np.float64)
    folds = KFold(
        n_splits=min(cfg.cv_folds, len(y)),
        shuffle=cfg.cv_shuffle,
        random_state=cfg.seed if cfg.cv_shuffle else None,
    )
    splits = [(tr, va) for tr, va in folds.split(X) if len(np.unique(y[tr])) == 2]
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w is not None and (w.shape != (len(y),) or not np.all(np.isfinite(w)) or np.any(w <= 0)):
        raise ValueError("sample_weight needs one finite weight > 0 per row")
    jobs = [delayed(_fit_linear)(X[tr], y[tr], cfg, None, None if w is None else w[tr]) for tr, _ in splits]
    jobs.append(delayed(_fit_linear)(X, y, cfg, init, w))
    fitted = Parallel(n_jobs=n_jobs, prefer=_parallel_backend(cfg))(jobs)
    for (_, va), (fold_coef, fold_b) in zip(splits, fitted, strict=False):
        oof[va] = np.asarray(X[va] @ fold_coef).ravel() + fold_b
    calibration = fit_calibration(oof, y, cfg.calibration)
    coef, b = fitted[-1]
    probs = calibration.probability(oof)
    points = metrics.operating_points(y, probs)
    validation = metrics.summary(y, probs)
    kind = "shuffled" if cfg.cv_shuffle else "contiguous (time-ordered)"
    validation["method"] = f"{cfg.cv_folds}-fold out-of-fold on the training data, {kind} folds"
    return FitResult(
        model=LinearModel(coef=coef, intercept=b, calibration=calibration),
        operating_points=points,
        validation=validation,
        train_seconds=time.perf_counter() - start,
    )
