"""Ed25519 signatures over an artifact's manifest.

The manifest lists the sha256 of every other file, so one signature over the
manifest bytes covers the whole artifact: ``load_artifact`` checks the files
against the manifest, this module checks the manifest against a public key.
The signature lives beside the manifest as ``signature.ed25519`` (raw 64
bytes, base64); keys are PEM files (private key PKCS#8, public key SPKI).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from spamgate.model import atomic
from spamgate.model.artifact import MANIFEST, Artifact, ArtifactError
from spamgate.model.errors import ConfigurationError

SIGNATURE = "signature.ed25519"


class SignatureError(ArtifactError):
    """Unsigned, badly signed, or signed by another key."""


class KeyFileError(ConfigurationError, ValueError):
    """A key file that is not the Ed25519 key asked for: the admin's configuration, not the model's.

    A ``ValueError`` too, as cryptography's own error for a file that is no PEM key was.
    """


def generate_keypair(prefix: Path) -> tuple[Path, Path]:
    """Write ``PREFIX`` (private, mode 0600) and ``PREFIX.pub`` (public)."""
    prefix = Path(prefix)
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if prefix.exists():
        raise FileExistsError(f"{prefix} exists; refusing to overwrite a key")
    fd = os.open(prefix, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    pub_path = prefix.with_name(prefix.name + ".pub")
    pub_path.write_bytes(pub)
    return prefix, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; ``OSError`` when unreadable, ``KeyFileError`` when not an Ed25519 private key."""
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: an encrypted key
        raise KeyFileError(f"{path}: not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The key in ``path``; ``OSError`` when unreadable, ``KeyFileError`` when not an Ed25519 public key."""
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path}: not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return key


def sign_artifact(model_dir: Path, key: Ed25519PrivateKey) -> Path:
    """Sign ``model_dir/manifest.json``; writes ``signature.ed25519`` atomically."""
    model_dir = Path(model_dir)
    sig = key.sign((model_dir / MANIFEST).read_bytes())
    atomic.write_file(model_dir / SIGNATURE, base64.b64encode(sig) + b"\n")
    return model_dir / SIGNATURE


def verify_artifact(model_dir: Path, key: Ed25519PublicKey) -> str:
    """Raise ``SignatureError`` unless the manifest carries a valid signature by ``key``.

    Returns the sha256 of the manifest bytes verified, for ``check_signed``: the file is read here
    again, after (or before) whatever loaded the artifact, and may not be the same file by then.
    """
    model_dir = Path(model_dir)
    sig_path = model_dir / SIGNATURE
    if not sig_path.is_file():
        raise SignatureError(f"{model_dir}: unsigned (no {SIGNATURE})")
    try:
        sig = base64.b64decode(sig_path.read_bytes().strip(), validate=True)
    except ValueError as exc:
        raise SignatureError(f"{sig_path}: not a base64 signature") from exc
    try:
        manifest = (model_dir / MANIFEST).read_bytes()
        key.verify(sig, manifest)
    except InvalidSignature as exc:
        raise SignatureError(
            f"{model_dir}: signature does not match the manifest (tampered, or another key)"
        ) from exc
    except OSError as exc:
        raise SignatureError(f"{model_dir}: cannot read manifest: {exc.strerror}") from exc
    return hashlib.sha256(manifest).hexdigest()


def check_signed(artifact: Artifact, verified: object) -> None:
    """Refuse ``artifact`` unless the manifest a signature check verified (its sha256, which
    ``verify_artifact`` returns) is the one the artifact was built from.

    The check reads ``manifest.json`` again after ``load_artifact`` did: a folder whose manifest was
    swapped back to the signed one in between passed it while the other manifest's weights served.
    ``verified`` None: a verifier that does not say what it checked (nothing to compare).
    """
    if verified is None:
        return
    if not artifact.manifest_sha256 or verified != artifact.manifest_sha256:
        raise SignatureError(
            f"{artifact.path}: the manifest changed while it was being verified (signed sha256 "
            f"{verified}, loaded {artifact.manifest_sha256 or 'unknown'}); refused"
        )
