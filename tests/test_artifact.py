"""Artifact round-trip, and refusal of anything tampered with or incompatible."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spamgate.model.artifact import ArtifactError, LinearModel, load_artifact, write_artifact
from spamgate.model.bundled import bundled_model_path
from spamgate.model.calibration import Calibration
from spamgate.model.features import FeatureConfig
from spamgate.model.scoring import Scorer
from tests.mail import make

CFG = FeatureConfig(n_bits=12)


def _write(tmp_path: Path, name: str = "v1") -> Path:
    rng = np.random.default_rng(0)
    coef = (rng.normal(size=CFG.n_columns) * (rng.random(CFG.n_columns) < 0.3)).astype(np.float32)
    model = LinearModel(coef=coef, intercept=-0.5, calibration=Calibration.platt(1.2, 0.1))
    return write_artifact(tmp_path / name, {"version": name, "operating_points": []}, CFG, model)


def test_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path)
    art = load_artifact(path)
    assert art.version == "v1" and art.features == CFG
    assert art.manifest["files"]["weights.npz"]
    again = load_artifact(path)
    assert np.array_equal(art.model.coef, again.model.coef)
    s = Scorer(art).score(make())
    assert 0.0 <= s.probability <= 1.0 and s.model_version == "v1" and s.reasons


def test_versions_are_immutable(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(ArtifactError, match="already exists"):
        _write(tmp_path)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    data = bytearray((path / "weights.npz").read_bytes())
    data[100] ^= 0xFF
    (path / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(path)


def test_tampered_manifest_checksum_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m["files"]["weights.npz"] = "0" * 64
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_artifact(path)


def test_unlisted_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    (path / "extra.py").write_text("import os")
    with pytest.raises(ArtifactError, match="not listed"):
        load_artifact(path)


def test_other_feature_version_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m["feature_version"] = "sg-features-0"
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="cannot be reproduced"):
        load_artifact(path)


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    import hashlib
    import io

    path = _write(tmp_path)
    buf = io.BytesIO()
    np.savez(buf, coef_index=np.array([object()], dtype=object))
    (path / "weights.npz").write_bytes(buf.getvalue())
    m = json.loads((path / "manifest.json").read_text())
    m["files"]["weights.npz"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError):
        load_artifact(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a model directory"):
        load_artifact(tmp_path / "nope")


def test_bundled_model_loads_and_scores() -> None:
    art = load_artifact(bundled_model_path())
    names = [p["name"] for p in art.operating_points]
    assert {"fpr_1%", "fpr_0.1%", "fpr_0.01%"} <= set(names)
    assert "make default-model" in art.manifest["training"]["command"]
    s = Scorer(art)
    spam = make(
        {"Subject": "CHEAP V1AGRA!!! 90% OFF", "Message-ID": None},
        body="Buy cheap viagra cialis online now! No prescription needed. http://pills.example.biz/\n",
    )
    assert s.score(spam).probability > s.score(make()).probability


def test_bundled_model_passes_ordinary_mail_from_a_new_site() -> None:
    """Hand-written notes from a site no training corpus came from stay under the default TAG point.

    The bundled model before Enron-Spam was added (stage 8 in BENCHMARKS.md, 20261129-073819-b48ccbaa)
    scored all three at p = 0.69-0.70, far above its FPR-1% point (0.02), so the default policy
    tagged them. Phishing must still land above the point.
    """
    art = load_artifact(bundled_model_path())
    tag_at = next(p["threshold"] for p in art.operating_points if p["name"] == "fpr_1%")
    s = Scorer(art)
    lunch = "Hi Bob,\n\nare you free for lunch tomorrow at noon? The usual place near the station.\n\nAlice\n"
    for ham in (make(), make({"Received": None}), make({"Subject": "Re: lunch tomorrow?"}, body=lunch)):
        assert s.score(ham).probability < tag_at
    phish = make(
        {
            "From": "Security Team <security@paypa1-verify.example.com>",
            "Subject": "Your account has been suspended",
            "Message-ID": "<abc123@paypa1-verify.example.com>",
        },
        body="Dear Customer,\n\nWe have detected unusual activity on your account. Your account has been "
        "suspended. Please verify your identity within 24 hours by clicking the link below:\n\n"
        "http://paypa1-verify.example.com/login\n\nFailure to do so will result in permanent closure.\n",
    )
    assert s.score(phish).probability > tag_at


def test_copy_of_bundled_model_verifies(tmp_path: Path) -> None:
    dst = tmp_path / "copy"
    shutil.copytree(bundled_model_path(), dst)
    assert load_artifact(dst).version == load_artifact(bundled_model_path()).version
