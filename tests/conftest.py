"""Shared fixtures: a small model trained on generated mail (fast, no corpora needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.artifact import Artifact, load_artifact
from model.features import FeatureConfig
from tests.mail import generated_corpus
from training.fit import TrainConfig
from training.train import CorpusSpec, train


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    root = tmp_path_factory.mktemp("corpus")
    for i, (label, raw) in enumerate(generated_corpus(200, seed=3)):
        (root / label).mkdir(exist_ok=True)
        (root / label / f"m{i:04d}").write_bytes(raw)
    out: Path = tmp_path_factory.mktemp("models") / "small"
    train(
        [CorpusSpec(str(root), "dir")],
        out,
        FeatureConfig(n_bits=14),
        TrainConfig(cv_folds=3),
        exact=True,
        n_jobs=1,
        progress=False,
        command="pytest fixture",
    )
    return load_artifact(out)
