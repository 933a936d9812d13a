"""Evaluate an artifact on labelled mail, and draw ROC curves."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spamgate.model.artifact import Artifact
from spamgate.model.labelled import LabelledMessage
from spamgate.model.scoring import Scorer
from spamgate.model.training_filter import contains, load_training_filter, message_keys
from spamgate.training import metrics
from spamgate.training.corpora import CorpusError


def score_corpus(
    artifact: Artifact, messages: Iterable[LabelledMessage], batch: int = 500
) -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities and labels for a corpus, plus scoring messages/second (one core)."""
    scorer = Scorer(artifact)
    ys: list[int] = []
    ps: list[np.ndarray] = []
    raws: list[bytes] = []
    elapsed = 0.0
    for m in messages:
        raws.append(m.raw)
        ys.append(m.label)
        if len(raws) >= batch:
            t = time.perf_counter()
            ps.append(scorer.probabilities(raws))
            elapsed += time.perf_counter() - t
            raws = []
    if raws:
        t = time.perf_counter()
        ps.append(scorer.probabilities(raws))
        elapsed += time.perf_counter() - t
    probs = np.concatenate(ps) if ps else np.zeros(0)
    return np.asarray(ys), probs, (len(ys) / elapsed if elapsed > 0 else float("nan"))


def evaluate(artifact: Artifact, messages: Iterable[LabelledMessage]) -> dict[str, Any]:
    """The report ``spamgate evaluate`` prints: AUC, 1-ROCA%, rates at the model's points."""
    keys: list[int] = []

    def hashed(ms: Iterable[LabelledMessage]) -> Iterator[LabelledMessage]:
        for m in ms:
            keys.append(int(message_keys([m.raw])[0]))
            yield m

    y, p, rate = score_corpus(artifact, hashed(messages))
    if len(y) == 0:
        raise CorpusError("the evaluation corpus holds no messages")
    out = metrics.summary(y, p, artifact.operating_points)
    out["model_version"] = artifact.version
    # How many evaluation messages the model trained on (None: the artifact keeps no filter).
    filt = load_training_filter(artifact.path, artifact.manifest)
    out["in_training_mail"] = (
        None if filt is None else int(contains(filt, np.array(keys, dtype=np.uint64)).sum())
    )
    out["messages_per_second"] = rate
    out["_scores"] = (y, p)
    return out


def plot_roc(curves: list[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str = "ROC") -> Path:
    """ROC curves with a log-scaled FPR axis (where spam filters live)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for label, y, scores in curves:
        fpr, tpr = metrics.roc_points(y, scores)
        floor = 0.5 / max(1, int((np.asarray(y) == 0).sum()))
        ax.plot(
            np.maximum(fpr, floor),
            tpr,
            label=f"{label} (1-ROCA% {metrics.one_minus_roca_pct(y, scores):.4f})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("false-positive rate (ham marked spam), log scale")
    ax.set_ylabel("spam caught (true-positive rate)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_report(r: dict[str, Any]) -> str:
    """Plain-text form of an evaluation report."""
    lines = [
        f"model {r['model_version']}: {r['n']} messages ({r['n_ham']} ham, {r['n_spam']} spam)",
        f"ROC AUC {r['roc_auc']:.6f}   1-ROCA% {r['one_minus_roca_pct']:.4f}   ECE {r['ece']:.4f}",
        f"scoring {r['messages_per_second']:.0f} msgs/s (one core, features + model)",
        "in the model's training mail: "
        + (
            "unknown (this model keeps no record of its training mail; retrain it to get one)"
            if r.get("in_training_mail") is None
            else f"{r['in_training_mail']} of {r['n']} evaluation messages"
            + (" (these figures flatter the model)" if r["in_training_mail"] else "")
        ),
        "operating point   target FPR   threshold      FPR        FNR     catch",
    ]
    for p in r.get("at_operating_points", []):
        lines.append(
            f"{p['name']:<17} {p['target_fpr'] * 100:>8.3f}%   {p['threshold']:.6f}  "
            f"{p['fpr'] * 100:>7.3f}%  {p['fnr'] * 100:>7.3f}%  {p['catch'] * 100:>7.3f}%"
        )
    return "\n".join(lines)
