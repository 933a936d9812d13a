"""The on-disk model format: a directory of data, verified before use.

    <version>/manifest.json   what the model is, how it was made, sha256 of every file
    <version>/weights.npz     coef (sparse: index, value), intercept, calibration

Loading checks every listed file's sha256, refuses any file the manifest does
not list (and any dotfile or symlink), reads arrays with ``allow_pickle=False``
and validates shapes and values. An artifact is data; nothing in it is ever
executed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from spamgate.model import atomic
from spamgate.model.calibration import Calibration
from spamgate.model.errors import DataError
from spamgate.model.features import FEATURE_VERSION, FeatureConfig
from spamgate.model.heuristics import HEURISTIC_NAMES
from spamgate.model.manifest import Manifest, ManifestError, OperatingPoint

FORMAT = "spamgate-model/1"
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
_MAX_FILE_BYTES = 512 * 1024 * 1024
# A manifest is read (and parsed) before anything in it can be checked, so its size is capped on its
# own. The bundled one is 27 KB; a retrained one adds site figures and floors, not megabytes.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# And its nesting: json reads ~1,000 levels, but what shows a manifest walks it recursively (redact's
# scrub for GetModelInfo failed with RecursionError at 600). The bundled manifest is 7 deep, a
# retrained one's gate decision about as deep.
MAX_MANIFEST_DEPTH = 64
# weights.npz is compressed: 512 MB on disk could inflate to many GB when numpy reads a member. A model
# at n_bits 24 holds at most 2**24 float32 weights and int64 indices (~200 MB), so this bounds the
# members' declared sizes (zipfile stops reading a member at its declared size).
_MAX_WEIGHTS_INFLATED_BYTES = 1024 * 1024 * 1024
# And its member count: a writer puts 7 arrays in it, but every member was opened (and loaded) before
# the arrays were checked: 200,000 empty members in a 45 MB file took 16 s and 410 MB
# (tests/test_artifact_adversarial.py), which at the 512 MB cap is minutes and gigabytes.
_MAX_WEIGHTS_MEMBERS = 64


class ArtifactError(DataError, ValueError):
    """The artifact is missing, damaged, tampered with or incompatible."""


@dataclass(frozen=True)
class LinearModel:
    """Weights of the one linear model plus its calibration."""

    coef: np.ndarray  # float32, one per feature column
    intercept: float
    calibration: Calibration

    def margin(self, rows: Any) -> np.ndarray:
        return np.asarray(rows @ self.coef, dtype=np.float64).ravel() + self.intercept


@dataclass(frozen=True)
class Artifact:
    """A loaded, verified model version.

    ``manifest`` is the JSON as written (what the signature covers and ``GetModelInfo``
    shows); ``info`` is its typed, validated reading, built here once, which is what
    serving decides on (``model.manifest``).
    """

    path: Path | None
    manifest: dict[str, Any]
    features: FeatureConfig
    model: LinearModel
    # sha256 of the manifest bytes this was built from ("" when not read from a folder): a signature
    # check must be of these bytes (``check_signed``), and a scoring worker that loads the folder again
    # must find them there, not whatever the folder holds by then (``service.scoring.pool``).
    manifest_sha256: str = field(default="", compare=False)
    info: Manifest = field(init=False, repr=False, compare=False)
    _policy_points: tuple[OperatingPoint, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "info", Manifest.from_dict(self.manifest))  # ManifestError
        # Read per request by the verdict: resolved here, once.
        object.__setattr__(self, "_policy_points", self._resolve_policy_points())

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def operating_points(self) -> tuple[OperatingPoint, ...]:
        """Own-site points: measured out-of-fold on the training mail."""
        return self.info.operating_points

    @property
    def new_site_operating_points(self) -> tuple[OperatingPoint, ...]:
        """Points measured at sites the recipe was not trained on (``training.new_site``); may be empty."""
        return self.info.new_site_operating_points

    @property
    def site_reports(self) -> int:
        """How many of the serving site's own reports the model was trained on."""
        return self.info.site_reports

    @property
    def at_new_site(self) -> bool:
        """Judged as at a site it was not trained on: new-site points, and no site reports yet."""
        return self.site_reports == 0 and bool(self.new_site_operating_points)

    @property
    def policy_points(self) -> tuple[OperatingPoint, ...]:
        return self._policy_points

    def points_for(self, has_header_block: bool) -> tuple[OperatingPoint, ...]:
        """The points a message's thresholds resolve against: ``policy_points``, except for input
        with no header block at all (``MessageView.has_header_block``), judged by the recipe's
        new-site points on text alone when the manifest has them.

        Thresholds measured on whole messages do not hold on text alone: trec07p as a left-out site,
        given as text only, had 6.2% of its ham at or above the FPR-1% point of its whole messages
        (``training.text_only``). A gateway never hands over such input; an evaluation set or an API
        caller holding only a message's text does. A retrained model keeps the text-only points of
        the model it came from (``training.retrain``): its own points are measured on mail with
        headers too.
        """
        text_points = self.info.new_site_text_only_points
        if has_header_block or not text_points:
            return self._policy_points
        return text_points

    def _resolve_policy_points(self) -> tuple[OperatingPoint, ...]:
        """The points a policy's FPR targets resolve against where the model runs.

        A model that has never seen the site's own mail is judged by what its
        recipe did at sites it was not trained on; once retrained on the
        site's reports, by its own out-of-fold figures — but a point not yet
        measured on the site's own ham (fewer than 10 / FPR reported ham behind
        it) keeps the new-site threshold of the model it was retrained from as a
        floor. Evidence (issue 15, ``bench/learn_site.py --learn``): trec07p
        after 1,000 reports (217 ham), the own FPR-0.1% point, held on those
        217 ham and ~39,000 base messages, gave 0.113% (4 of 3,532) on the
        site's later ham; 217 ham cannot measure 0.1%, so the threshold the
        recipe held at sites it never saw stays the lower bound.
        """
        if self.at_new_site:
            return self.new_site_operating_points
        floors = {p.target_fpr: p for p in self.info.new_site_floor_points}
        out = []
        for own in self.operating_points:
            floor = floors.get(own.target_fpr)
            if floor is not None and not own.measured_at_site and floor.threshold > own.threshold:
                own = replace(own, threshold=floor.threshold, fpr=floor.fpr, catch=floor.catch, floored=True)
            out.append(own)
        return tuple(out)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _weights_bytes(model: LinearModel) -> bytes:
    nz = np.flatnonzero(model.coef)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        coef_index=nz.astype(np.int32),
        coef_value=model.coef[nz].astype(np.float32),
        n_columns=np.array([model.coef.shape[0]], dtype=np.int64),
        intercept=np.array([model.intercept], dtype=np.float64),
        calibration_params=model.calibration.params,
        calibration_x=model.calibration.x,
        calibration_y=model.calibration.y,
    )
    return buf.getvalue()


def write_artifact(
    out_dir: Path,
    manifest: dict[str, Any],
    features: FeatureConfig,
    model: LinearModel,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a complete artifact directory atomically (temp dir + rename).

    ``manifest`` supplies the descriptive fields (version, training, metrics,
    operating points); format, feature version/config, heuristics, model
    shape and file checksums are filled in here so they cannot disagree with
    what is written. ``extra_files`` (plain names → bytes; data only, e.g.
    ``model.training_filter``'s digests) are written and listed with their
    sha256 like the weights, so a signature over the manifest covers them.
    """
    out_dir = Path(out_dir)
    extra = dict(extra_files or {})
    for name in extra:
        if Path(name).name != name or name.startswith(".") or name in (MANIFEST, WEIGHTS):
            raise ArtifactError(f"extra file name {name!r} is not a plain, free name")
    if out_dir.exists():
        raise ArtifactError(f"{out_dir}: already exists; model versions are immutable")
    if model.coef.shape != (features.n_columns,):
        raise ArtifactError(f"coef has {model.coef.shape} columns, features need {features.n_columns}")
    try:  # a trainer cannot write what a gateway would refuse to load
        Manifest.from_dict(manifest)
    except ManifestError as exc:
        raise ArtifactError(f"{out_dir}: invalid manifest: {exc}") from exc
    weights = _weights_bytes(model)
    full = dict(manifest)
    full.update(
        {
            "format": FORMAT,
            "feature_version": FEATURE_VERSION,
            "feature_config": features.to_dict(),
            "heuristics": list(HEURISTIC_NAMES),
            "calibration": model.calibration.kind,
            "files": {
                WEIGHTS: hashlib.sha256(weights).hexdigest(),
                **{name: hashlib.sha256(content).hexdigest() for name, content in extra.items()},
            },
        }
    )
    with atomic.staged_dir(out_dir) as tmp:
        (tmp / WEIGHTS).write_bytes(weights)
        for name, content in extra.items():
            (tmp / name).write_bytes(content)
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return out_dir


def json_depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and objects; walked without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _require(cond: bool, path: Path, why: str) -> None:
    if not cond:
        raise ArtifactError(f"{path}: {why}")


def load_artifact(path: Path | str) -> Artifact:
    """Load and verify an artifact directory; raise ``ArtifactError`` on any doubt."""
    path = Path(path)
    mpath = path / MANIFEST
    _require(path.is_dir(), path, "not a model directory")
    # Before reading anything: a dotfile or a symlink in a version folder is never the trainer's (it
    # writes through a temp folder and a rename), and a symlink could point the loader at any file.
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable: {exc.strerror}") from exc
    hidden = sorted(p.name for p in entries if p.name.startswith("."))
    _require(not hidden, path, f"hidden files in a model folder: {hidden}")
    links = sorted(p.name for p in entries if p.is_symlink())
    _require(not links, path, f"symlinks in a model folder: {links}")
    _require(mpath.is_file(), path, f"no {MANIFEST}")
    try:
        with mpath.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ArtifactError(f"{mpath}: unreadable manifest: {exc}") from exc
    _require(len(raw) <= MAX_MANIFEST_BYTES, mpath, f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: '[' nested 10^5 deep
        raise ArtifactError(f"{mpath}: unreadable manifest: {exc}") from exc
    _require(isinstance(manifest, dict), mpath, "manifest is not a JSON object")
    _require(
        json_depth(manifest) <= MAX_MANIFEST_DEPTH, mpath, f"manifest nested deeper than {MAX_MANIFEST_DEPTH}"
    )
    _require(
        manifest.get("format") == FORMAT, mpath, f"format {manifest.get('format')!r}, expected {FORMAT!r}"
    )
    _require("version" in manifest, mpath, "manifest has no version")
    fv = manifest.get("feature_version")
    _require(
        fv == FEATURE_VERSION,
        mpath,
        f"feature version {fv!r} cannot be reproduced by this code ({FEATURE_VERSION!r}); "
        "retrain the model or run a matching spamgate release",
    )
    _require(
        manifest.get("heuristics") == list(HEURISTIC_NAMES),
        mpath,
        "heuristic list differs from this code's; the model's columns would not line up",
    )
    try:
        features = FeatureConfig.from_dict(manifest.get("feature_config", {}))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{mpath}: invalid feature_config: {exc}") from exc

    files = manifest.get("files")
    _require(isinstance(files, dict) and WEIGHTS in files, mpath, f"manifest does not list {WEIGHTS}")
    present = {p.name for p in entries if p.name != MANIFEST}
    unlisted = present - set(files) - {"signature.ed25519"}
    _require(not unlisted, path, f"files not listed in the manifest: {sorted(unlisted)}")
    # The weights are read once, and what was hashed is what is parsed: a file swapped between the
    # hash and the parse (it was opened twice) served bytes the manifest, and so the signature, never
    # covered (tests/test_artifact_adversarial.py).
    weights = b""
    for name, digest in files.items():
        fpath = path / name
        _require(Path(name).name == name, mpath, f"file name {name!r} is not a plain name")
        _require(fpath.is_file(), path, f"{name} listed in manifest but missing")
        _require(
            fpath.stat().st_size <= _MAX_FILE_BYTES, path, f"{name} is larger than {_MAX_FILE_BYTES} bytes"
        )
        if name == WEIGHTS:
            weights = _read_capped(fpath)
            actual = hashlib.sha256(weights).hexdigest()
        else:  # read (and hashed again) by whatever uses it: model.training_filter
            actual = sha256_file(fpath)
        _require(actual == digest, path, f"{name} sha256 mismatch: manifest {digest}, file {actual}")

    _check_inflated_size(path / WEIGHTS, weights)
    try:
        with np.load(io.BytesIO(weights), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except _ARCHIVE_ERRORS as exc:
        raise ArtifactError(f"{path / WEIGHTS}: unreadable: {exc}") from exc
    model = _model_from_arrays(arrays, features, path)
    _require(
        manifest.get("calibration") == model.calibration.kind,
        mpath,
        f"manifest says calibration {manifest.get('calibration')!r}, weights hold {model.calibration.kind!r}",
    )
    try:
        return Artifact(
            path=path,
            manifest=manifest,
            features=features,
            model=model,
            manifest_sha256=hashlib.sha256(raw).hexdigest(),
        )
    except ManifestError as exc:
        raise ArtifactError(f"{mpath}: {exc}") from exc


# What a damaged archive raises while numpy reads it: a wrong CRC-32 or a member's sizes that lie
# (zipfile.BadZipFile), a broken deflate stream (zlib.error), compressed data that ends early
# (EOFError); each escaped load_artifact before (tests/test_artifact.py), and callers catch ArtifactError.
_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_capped(path: Path) -> bytes:
    """The file's bytes, at most ``_MAX_FILE_BYTES`` of them (it may have grown since its size was read)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable: {exc.strerror}") from exc
    _require(len(data) <= _MAX_FILE_BYTES, path.parent, f"{path.name} is larger than {_MAX_FILE_BYTES} bytes")
    return data


def _check_inflated_size(npz: Path, data: bytes) -> None:
    """Refuse a weights archive (``data``, read from ``npz``) of more members than a model has, whose
    members would inflate past the cap (a zip bomb), or holding an array whose header declares more
    data than its member's size: numpy allocates the declared shape before reading, so a 200-byte
    member declaring 2**45 floats was a MemoryError, not an ArtifactError."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            inflated = sum(info.file_size for info in infos)
            too_many = len(infos) > _MAX_WEIGHTS_MEMBERS or inflated > _MAX_WEIGHTS_INFLATED_BYTES
            declared = {} if too_many else _declared_bytes(zf, infos)
    except _ARCHIVE_ERRORS as exc:
        raise ArtifactError(f"{npz}: unreadable: {exc}") from exc
    _require(
        len(infos) <= _MAX_WEIGHTS_MEMBERS,
        npz.parent,
        f"{npz.name} holds {len(infos)} members (a model has 7; cap {_MAX_WEIGHTS_MEMBERS})",
    )
    _require(
        inflated <= _MAX_WEIGHTS_INFLATED_BYTES,
        npz.parent,
        f"{npz.name} would inflate to {inflated} bytes (cap {_MAX_WEIGHTS_INFLATED_BYTES})",
    )
    for info in infos:
        want = declared.get(info.filename, 0)
        _require(
            want <= info.file_size,
            npz.parent,
            f"{npz.name}: {info.filename} declares {want} bytes of array data but holds {info.file_size}",
        )


def _declared_bytes(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> dict[str, int]:
    """Bytes of array data each .npy member's header declares (read from the header alone)."""
    out: dict[str, int] = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue  # np.load hands other members back as bytes, bounded by their size
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # np.savez writes 1.0 (2.0 for huge headers); 3.0 is for non-latin-1 field names
                raise ValueError(f"{info.filename}: unsupported .npy format version {version}")
        out[info.filename] = math.prod(shape) * dtype.itemsize
    return out


def _model_from_arrays(a: dict[str, np.ndarray], features: FeatureConfig, path: Path) -> LinearModel:
    need = (
        "coef_index",
        "coef_value",
        "n_columns",
        "intercept",
        "calibration_params",
        "calibration_x",
        "calibration_y",
    )
    missing = [k for k in need if k not in a]
    _require(not missing, path, f"{WEIGHTS} lacks arrays {missing}")
    # Numbers of the kinds the writer stores, one value where one is meant: a string, structured or
    # empty array was a TypeError, IndexError or ValueError from here, not an ArtifactError, and a
    # float column count was truncated to match (tests/test_artifact_adversarial.py).
    for k in need:
        ints_only = k in ("coef_index", "n_columns")
        _require(
            a[k].ndim == 1 and a[k].dtype.kind in ("iu" if ints_only else "iuf"),
            path,
            f"{WEIGHTS}: {k} is not a 1-D array of {'integers' if ints_only else 'numbers'} ({a[k].dtype})",
        )
    _require(
        a["n_columns"].shape == (1,) and a["intercept"].shape == (1,),
        path,
        "n_columns, intercept: one value each",
    )
    n = int(a["n_columns"][0])
    _require(n == features.n_columns, path, f"weights have {n} columns, features need {features.n_columns}")
    idx, val = a["coef_index"], a["coef_value"]
    _require(idx.ndim == 1 and idx.shape == val.shape, path, "coef index/value shapes differ")
    _require(idx.dtype.kind == "i" and val.dtype.kind == "f", path, "coef arrays have wrong dtypes")
    _require(bool(np.all((idx >= 0) & (idx < n))), path, "coef index out of range")
    _require(bool(np.all(np.isfinite(val))), path, "coef holds non-finite values")
    coef = np.zeros(n, dtype=np.float32)
    coef[idx] = val
    intercept = float(a["intercept"][0])
    _require(np.isfinite(intercept), path, "intercept is not finite")
    kind = "platt" if a["calibration_params"].size else "isotonic"
    try:
        cal = Calibration(kind, a["calibration_params"], a["calibration_x"], a["calibration_y"])
    except ValueError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    return LinearModel(coef=coef, intercept=intercept, calibration=cal)
