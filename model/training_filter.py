"""Which messages a model was trained on: a sorted array of truncated sha256 digests in the artifact.

``spamgate evaluate`` must say when the evaluation mail was training mail
(csdmc2010 holds 2,334 of SpamAssassin's messages, so a model trained on one
flatters itself on the other), and the retrain gate must know whether the
model it compares against has seen the held-back mail. So a model version
keeps ``training_digests.npy``: the first 8 bytes of each training message's
sha256 as big-endian uint64, sorted and unique — 8 bytes a message (64,295
messages: 0.5 MB), a membership test by binary search, and a false match
once in ~2^64 / n lookups. A ``.npy`` is plain data: it is read with
``allow_pickle=False``, listed in the manifest with its sha256 (so the
manifest's signature covers it) and checked again here when read. An artifact
written before this file existed has none: its overlap is "unknown".
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from spamgate.model.artifact import ArtifactError

TRAINING_DIGESTS = "training_digests.npy"
_DTYPE = np.dtype(">u8")


def digest_keys(hex_digests: Iterable[str]) -> np.ndarray:
    """Sorted unique uint64 keys of sha256 hex digests (the first 16 hex digits)."""
    keys = np.array([int(d[:16], 16) for d in hex_digests], dtype=np.uint64)
    return np.unique(keys)


def message_keys(raws: Iterable[bytes]) -> np.ndarray:
    """Keys of raw messages, in the order given (not deduplicated)."""
    return np.array([int.from_bytes(hashlib.sha256(r).digest()[:8], "big") for r in raws], dtype=np.uint64)


def to_bytes(keys: np.ndarray) -> bytes:
    """The ``.npy`` file's bytes (big-endian uint64, so the bytes are the digests' own prefixes)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(keys, dtype=np.uint64).astype(_DTYPE), allow_pickle=False)
    return buf.getvalue()


def contains(filter_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per key: whether it is in the (sorted) filter."""
    keys = np.asarray(keys, dtype=np.uint64)
    if filter_keys.size == 0 or keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.clip(np.searchsorted(filter_keys, keys), 0, filter_keys.size - 1)
    return np.asarray(filter_keys[pos] == keys)


def load_training_filter(model_dir: Path | None, manifest: dict[str, object]) -> np.ndarray | None:
    """The model's training keys, or None when the artifact keeps none (an older model: "unknown").

    Raises ``ArtifactError`` (a ``ValueError``) if the file is listed but damaged:
    a filter that cannot be trusted must not answer "0 overlapping".
    """
    files = manifest.get("files")
    if model_dir is None or not isinstance(files, dict) or TRAINING_DIGESTS not in files:
        return None
    path = Path(model_dir) / TRAINING_DIGESTS
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != files[TRAINING_DIGESTS]:
        raise ArtifactError(f"{path}: sha256 differs from the manifest's")
    try:
        # numpy allocates the shape a header declares before reading: a 100-byte file declaring
        # 2**45 keys was a MemoryError (256 TiB), not an ArtifactError (tests/test_artifact_adversarial.py).
        fh = io.BytesIO(data)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # np.save writes 1.0 (2.0 for huge headers)
            raise ValueError(f"unsupported .npy format version {version}")
        if math.prod(shape) * dtype.itemsize > len(data):
            raise ValueError(f"declares {shape} {dtype}, more than its {len(data)} bytes")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a .npy array: {exc}") from exc
    if arr.dtype != _DTYPE or arr.ndim != 1:
        raise ArtifactError(f"{path}: expected a 1-D big-endian uint64 array, got {arr.dtype} {arr.shape}")
    keys = arr.astype(np.uint64)
    if keys.size > 1 and not bool(np.all(keys[1:] > keys[:-1])):
        raise ArtifactError(f"{path}: keys are not sorted and unique")
    return keys
