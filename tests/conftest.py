"""Shared fixtures: small models trained on generated mail (fast, no corpora needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.artifact import Artifact, load_artifact
from model.features import FeatureConfig
from tests.mail import generated_corpus
from training.fit import TrainConfig
from training.train import CorpusSpec, train


def write_corpus(root: Path, n: int = 200, seed: int = 3, flip: bool = False) -> Path:
    """A ham/ + spam/ folder of generated messages (labels swapped with ``flip``)."""
    for i, (label, raw) in enumerate(generated_corpus(n, seed=seed)):
        if flip:
            label = "ham" if label == "spam" else "spam"
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"m{seed}_{i:04d}").write_bytes(raw)
    return root


def train_small(out: Path, seed: int = 3, n: int = 200) -> Artifact:
    """Train a small model on generated mail into ``out`` (exact folder)."""
    root = write_corpus(out.parent / f"corpus-{seed}-{n}", n, seed)
    train(
        [CorpusSpec(str(root), "dir")],
        out,
        FeatureConfig(n_bits=14),
        TrainConfig(cv_folds=3, loss="sgd_log"),
        exact=True,
        n_jobs=1,
        progress=False,
        command="pytest fixture",
    )
    return load_artifact(out)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return train_small(tmp_path_factory.mktemp("models") / "small")
