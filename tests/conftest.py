"""Shared fixtures: small models trained on generated mail (fast, no corpora needed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from spamgate.model.artifact import Artifact, load_artifact
from spamgate.model.bundled import bundled_model_path
from spamgate.model.features import FeatureConfig
from spamgate.service.api.client import SpamGateClient
from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.training.fit import TrainConfig
from spamgate.training.train import CorpusSpec, train
from tests.mail import generated_corpus


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


@pytest.fixture(scope="module")
def bundled_holder() -> ModelHolder:
    """A holder with the bundled model, as on a fresh install (loaded once per test module)."""
    h = ModelHolder()
    h.load(bundled_model_path())
    return h


def damaged_copy(model: Artifact, dest: Path) -> Path:
    """A copy of ``model`` at ``dest`` whose weights.npz ends in 10 wrong bytes, so loading it fails."""
    assert model.path is not None
    shutil.copytree(model.path, dest)
    weights = dest / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    return dest


@contextmanager
def serve_with_policy(
    model: Artifact, policy: Path, admin_socket: Path | None = None
) -> Iterator[SpamGateClient]:
    """A real server on an ephemeral 127.0.0.1 port with ``model`` and the policy file ``policy``.

    The client yielded is on TCP; admin calls go to ``admin_socket`` (``unix:PATH``).
    """
    from spamgate.service.api.server import start_server
    from spamgate.service.runtime.config import load_config, with_server

    assert model.path is not None
    overrides: dict[str, dict[str, Any]] = {
        "metrics": {"port": 0},
        "policy": {"file": str(policy)},
        "model": {"path": str(model.path)},
    }
    if admin_socket is not None:
        overrides["admin"] = {"socket": str(admin_socket)}
    running = start_server(with_server(load_config(None, overrides), port=0))
    running.engine.holder.load(model.path)
    client = SpamGateClient(f"127.0.0.1:{running.port}")
    try:
        yield client
    finally:
        client.close()
        running.stop(0).wait()


# A site learning from its reports (tests/test_site_learning.py, tests/test_feedback_adversarial.py):
# small features and three calibration folds keep a retrain under a few seconds.
SITE_FEATURES = FeatureConfig(n_bits=14)
SITE_TRAINING = TrainConfig(cv_folds=3)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A registry with an active model trained on a generated base corpus, and that corpus."""
    root = tmp_path_factory.mktemp("site")
    base = write_corpus(root / "base", 400, seed=41)
    reg = root / "models"
    train(
        [CorpusSpec(str(base), "dir")],
        reg,
        SITE_FEATURES,
        SITE_TRAINING,
        n_jobs=1,
        progress=False,
        command="pytest",
    )
    (version,) = ModelRegistry(reg).versions()
    ModelRegistry(reg).activate(version)
    return reg, base, version
