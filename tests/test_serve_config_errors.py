"""``spamgate serve`` refuses a configuration it cannot serve: exit 78 (EX_CONFIG) with the reason.

(Bad keys and values in the config file, and a bad policy, are covered in
test_service.py and test_policy_reload.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spamgate.model.artifact import Artifact
from spamgate.service.api.launch import REPO
from tests.conftest import damaged_copy


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spamgate.service.cli", "serve", "--port", "0", "--metrics-port", "0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unusable_public_key_is_a_configuration_error(tmp_path: Path) -> None:
    key = tmp_path / "signing.pub"
    key.write_text("not a key\n")
    config = tmp_path / "spamgate.toml"
    config.write_text(f'[model]\npublic_key = "{key}"\n')
    r = serve("--config", str(config))
    assert r.returncode == 78 and "spamgate serve: configuration error:" in r.stderr, r.stderr


def test_a_damaged_model_is_a_configuration_error(tmp_path: Path, small_model: Artifact) -> None:
    model = damaged_copy(small_model, tmp_path / "model")
    r = serve("--model", str(model))
    assert r.returncode == 78, r.stderr
    assert "spamgate serve: configuration error: model" in r.stderr and "weights.npz" in r.stderr
