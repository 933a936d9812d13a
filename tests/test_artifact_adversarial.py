"""An attacker against the model artifact: files planted in a folder that will be loaded, a malicious
artifact, and swaps raced against the loader.

What a signature promises with ``[model] public_key`` set: the bytes that score mail are the bytes the
key signed. Before these tests, three paths broke that (review of artifact loading, 2026-12):

* ``ModelHolder.load`` / ``ModelRegistry.load`` parsed the folder with ``load_artifact`` and then checked
  the signature by reading ``manifest.json`` again: a manifest swapped back to the signed one between
  the two reads passed the check while the weights of the first read served.
* ``load_artifact`` hashed ``weights.npz`` and then opened it again to parse it: weights swapped in
  between served under the signed manifest's hash.
* Each scoring worker (``[budget] cpu_budget_ms``, on by default) loaded the model again from its folder,
  with no signature check: a folder rewritten (self-consistently) after the server verified it was what
  the workers scored with, at the next warm-up or the next worker replaced after going over budget.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spamgate.model.artifact import (
    MANIFEST,
    WEIGHTS,
    Artifact,
    ArtifactError,
    LinearModel,
    load_artifact,
    write_artifact,
)
from spamgate.model.calibration import Calibration
from spamgate.model.features import FeatureConfig
from spamgate.model.signing import SignatureError, sign_artifact, verify_artifact
from spamgate.service.api.launch import REPO
from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.pool import ScoringAborted, ScoringPool
from tests.mail import make

CFG = FeatureConfig(n_bits=12)
KEY = Ed25519PrivateKey.generate()
MESSAGE = make()


def _write(parent: Path, name: str = "v1") -> Path:
    rng = np.random.default_rng(0)
    coef = (rng.normal(size=CFG.n_columns) * (rng.random(CFG.n_columns) < 0.3)).astype(np.float32)
    model = LinearModel(coef=coef, intercept=-0.5, calibration=Calibration.platt(1.2, 0.1))
    return write_artifact(parent / name, {"version": name, "operating_points": []}, CFG, model)


def _signed(parent: Path, name: str = "v1") -> Path:
    path = _write(parent, name)
    sign_artifact(path, KEY)
    return path


def _verifier() -> Callable[[Path], str | None]:
    key = KEY.public_key()
    return lambda path: verify_artifact(path, key)


def _rehash(path: Path) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _weights_with(path: Path, **arrays: Any) -> None:
    """Replace arrays in ``weights.npz`` (None drops one) and fix the manifest's hash: what anyone
    without the key can do. The signature, if any, no longer matches."""
    with np.load(path / WEIGHTS) as z:
        out = {k: z[k] for k in z.files}
    for k, v in arrays.items():
        if v is None:
            out.pop(k)
        else:
            out[k] = v
    buf = io.BytesIO()
    np.savez(buf, **out)
    (path / WEIGHTS).write_bytes(buf.getvalue())
    _rehash(path)


def _tampered_files(signed: Path, where: Path) -> dict[str, bytes]:
    """The files of ``signed`` rewritten to call everything spam (intercept +40), hashes fixed."""
    shutil.copytree(signed, where)
    _weights_with(where, intercept=np.array([40.0]))
    return {f.name: f.read_bytes() for f in where.iterdir()}


def _put(path: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (path / name).write_bytes(data)


def _p(artifact: Artifact) -> float:
    from spamgate.model.scoring import Scorer

    return Scorer(artifact).score(MESSAGE).probability


# -- 1. loading never executes code or reads outside the folder ----------------------------------------


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", ".", "sub/x", "", "a\x00b"])
def test_a_manifest_naming_a_file_outside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][name] = hashlib.sha256(b"").hexdigest()
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError):
        load_artifact(path)


def test_a_symlink_to_the_signed_weights_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    (path / WEIGHTS).rename(tmp_path / "elsewhere.npz")
    (path / WEIGHTS).symlink_to(tmp_path / "elsewhere.npz")
    with pytest.raises(ArtifactError, match="symlinks"):
        load_artifact(path)


def test_a_pickled_member_beside_the_weights_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    with zipfile.ZipFile(path / WEIGHTS, "a") as zf:
        buf = io.BytesIO()
        np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        zf.writestr("evil.npy", buf.getvalue())
    _rehash(path)
    with pytest.raises(ArtifactError, match="allow_pickle"):
        load_artifact(path)


# -- 2. the signature covers what scores, at the moment it scores --------------------------------------


def test_a_manifest_swapped_back_during_verification_is_refused_by_the_holder(tmp_path: Path) -> None:
    """The attacker's folder is read by the loader; the signed manifest is back when the signature is
    checked. Before: loaded, p = 1.0 from the unsigned weights."""
    signed = _signed(tmp_path / "models")
    genuine = {f.name: f.read_bytes() for f in signed.iterdir()}
    good_p = _p(load_artifact(signed))
    _put(signed, _tampered_files(signed, tmp_path / "evil"))
    verify = _verifier()

    def racing(path: Path) -> str | None:
        _put(path, genuine)  # the swap lands between the loader's read and the signature's
        return verify(path)

    holder = ModelHolder(verify=racing)
    try:
        scorer = holder.load(signed)
    except SignatureError:
        return
    assert scorer.score(MESSAGE).probability == pytest.approx(good_p), "unsigned weights served"


def test_a_manifest_swapped_back_during_verification_is_never_activated(tmp_path: Path) -> None:
    root = tmp_path / "models"
    signed = _signed(root)
    genuine = {f.name: f.read_bytes() for f in signed.iterdir()}
    _put(signed, _tampered_files(signed, tmp_path / "evil"))
    verify = _verifier()

    def racing(path: Path) -> str | None:
        _put(path, genuine)
        return verify(path)

    registry = ModelRegistry(root, racing)
    with pytest.raises(SignatureError):
        registry.load("v1")


def test_weights_swapped_after_hashing_are_not_the_ones_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``np.load`` is where the loader read the weights a second time (after hashing them)."""
    path = _write(tmp_path)
    good_p = _p(load_artifact(path))
    evil = _tampered_files(path, tmp_path / "evil")[WEIGHTS]
    real_load = np.load

    def swapping_load(*args: Any, **kwargs: Any) -> Any:
        (path / WEIGHTS).write_bytes(evil)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", swapping_load)
    assert _p(load_artifact(path)) == pytest.approx(good_p)


def test_a_scoring_worker_never_loads_a_folder_rewritten_after_verification(tmp_path: Path) -> None:
    """The server verified the signed folder; it is rewritten (hashes consistent, signature not) before
    a worker loads it (a warm-up after a swap, or a worker replaced after going over budget). Before:
    the worker scored p = 1.0 with the unsigned weights."""
    signed = _signed(tmp_path / "models")
    holder = ModelHolder(verify=_verifier())
    scorer = holder.load(signed)
    good_p = scorer.score(MESSAGE).probability
    _put(signed, _tampered_files(signed, tmp_path / "evil"))
    with pytest.raises(SignatureError):
        verify_artifact(signed, KEY.public_key())  # the folder is no longer what the key signed
    with ScoringPool(1, 10_000, queue_seconds=60) as pool:
        try:
            p = pool.score(scorer, MESSAGE, 0, time_remaining=60).probability
        except ScoringAborted:
            return  # refused: the worker would not load what the server had not verified
    assert p == pytest.approx(good_p), f"worker scored {p} with unsigned weights (verified model: {good_p})"


def test_an_unsigned_model_with_a_public_key_is_a_configuration_error(tmp_path: Path) -> None:
    """Unsigned models are served by default (the bundled one is unsigned); with a key, exit 78."""
    model = _write(tmp_path)
    (tmp_path / "signing.pub").write_bytes(KEY.public_key().public_bytes(*_spki()))
    config = tmp_path / "spamgate.toml"
    config.write_text(f'[model]\npath = "{model}"\npublic_key = "{tmp_path / "signing.pub"}"\n')
    serve = [sys.executable, "-m", "spamgate.service.cli", "serve", "--port", "0", "--metrics-port", "0"]
    r = subprocess.run(
        [*serve, "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 78 and "unsigned" in r.stderr, r.stderr


def _spki() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo


# -- 3. malformed weights: a clear ArtifactError, in bounded time --------------------------------------


@pytest.mark.parametrize(
    "arrays",
    [
        {"calibration_params": np.array(["a", "b"])},  # TypeError from isfinite before
        {"calibration_params": np.zeros(2, dtype=[("a", "f8")])},  # TypeError
        {"n_columns": np.array([], dtype=np.int64)},  # IndexError
        {"intercept": np.array([], dtype=np.float64)},  # IndexError
        {"intercept": np.array(["x"])},  # ValueError (not an ArtifactError)
        {"n_columns": np.array([4137.9])},  # int() truncated a float column count
    ],
    ids=["str-calibration", "structured", "empty-n_columns", "empty-intercept", "str-intercept", "float-n"],
)
def test_malformed_weight_arrays_are_an_artifact_error(tmp_path: Path, arrays: dict[str, Any]) -> None:
    path = _write(tmp_path)
    _weights_with(path, **arrays)
    with pytest.raises(ArtifactError):
        load_artifact(path)


@pytest.mark.parametrize(
    ("x", "y"),
    [([-5.0, 0.0, 5.0], [-3.0, 0.5, 7.0]), ([5.0, -5.0], [0.1, 0.9])],
    ids=["outside-probabilities", "falling-margins"],
)
def test_an_isotonic_table_that_is_no_calibration_is_refused(
    tmp_path: Path, x: list[float], y: list[float]
) -> None:
    """Outside [0, 1]: loaded, and the model answered p = 7.0. Falling breakpoints: ``numpy.interp``
    needs increasing ones and says nothing when they are not."""
    path = _write(tmp_path)
    _weights_with(path, calibration_params=np.zeros(0), calibration_x=np.array(x), calibration_y=np.array(y))
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["calibration"] = "isotonic"
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="calibration"):
        load_artifact(path)


def test_a_weights_archive_of_many_members_is_refused_quickly(tmp_path: Path) -> None:
    """Each member was opened (and loaded): 200,000 empty members in a 45 MB file took 16 s and
    410 MB; at the 512 MB file cap, minutes and gigabytes, before any signature was checked."""
    path = _write(tmp_path)
    buf = io.BytesIO()
    np.save(buf, np.zeros(0))
    with zipfile.ZipFile(path / WEIGHTS, "a") as zf:
        for i in range(20_000):
            zf.writestr(f"m{i}.npy", buf.getvalue())
    _rehash(path)
    begun = time.monotonic()
    with pytest.raises(ArtifactError, match="members"):
        load_artifact(path)
    assert time.monotonic() - begun < 2.0


def test_training_digests_declaring_an_absurd_shape_are_an_artifact_error(tmp_path: Path) -> None:
    """Read by ``spamgate evaluate`` and the retrain gate. Before: MemoryError (256 TiB)."""
    from spamgate.model.training_filter import TRAINING_DIGESTS, load_training_filter

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": ">u8", "fortran_order": False, "shape": (2**45,)})
    buf.write(b"\0" * 24)
    (tmp_path / TRAINING_DIGESTS).write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    with pytest.raises(ArtifactError, match="declares"):
        load_training_filter(tmp_path, {"files": {TRAINING_DIGESTS: digest}})
