"""The distribution point's index: what a publisher offers, signed, parsed strictly.

``index.json`` (format ``spamgate-index/2``)::

    {"format": "spamgate-index/2",
     "published": "2026-11-30T02:00:00+00:00",
     "sequence": 42,                                  # +1 at every publish and withdraw
     "expires": "2026-12-30T02:00:00+00:00",          # gateways refuse the index after this (UTC)
     "current": "20261130-020000-1c2d3e4f",          # what gateways with --activate auto run
     "withdrawn": ["20261129-014045-b48ccbaa"],      # recalled: never pulled, never auto-activated
     "versions": {"20261130-020000-1c2d3e4f":
                   {"files": {"manifest.json": {"size": 1234, "sha256": "…"},
                              "signature.ed25519": {"size": 89, "sha256": "…"},
                              "weights.npz": {"size": 2348132, "sha256": "…"}}}}}

``index.json.ed25519`` beside it holds the publisher's Ed25519 signature over
the exact bytes of ``index.json`` (base64, as ``signature.ed25519`` is for a
manifest). The index gives every file's size, so a gateway caps each
download before it starts, and the manifest's sha256, so a manifest edited
after publishing is caught even without a key.

``sequence`` and ``expires`` stop a replay (TUF's lessons; issue 16): a mirror
or an attacker serving an older signed index, say one from before a version
was withdrawn, offers the publisher's own valid signature. A gateway keeps the
highest sequence it accepted and refuses a lower one, and refuses an index past
its expiry, so a frozen copy goes stale within ``--valid-days``. A signed index
must carry both (``service.lifecycle.shipping.pull``); indexes written before they
existed parse without them (None) and are pulled unsigned only.

``versions`` is an object keyed by version name: a gateway of an earlier
release iterates it as a list of names and keeps working. Such a release's
own index (``{"versions": ["v1", …]}``) still parses, as a *legacy* index
without sizes, hashes, ``current`` or signature.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from spamgate.model.artifact import MANIFEST, sha256_file
from spamgate.model.errors import DataError
from spamgate.model.signing import SignatureError
from spamgate.service.lifecycle.model_registry import version_problem

INDEX = "index.json"
INDEX_SIGNATURE = "index.json.ed25519"
FORMAT = "spamgate-index/2"
# A plain file name inside a version folder: same alphabet as version names, never dot-leading.
_FILE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_VALID_DAYS = 30  # --valid-days: a publisher re-publishing monthly, or more often, never lapses
MAX_VALID_DAYS = 3650  # beyond ten years an expiry stops a replay in name only


class BadIndex(DataError, ValueError):
    """An index that is not valid JSON or not in the format above (what is wrong, where)."""


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Index:
    """A parsed index. ``versions[name]`` is None for a legacy index (no file list)."""

    versions: dict[str, dict[str, FileEntry] | None]
    current: str | None = None
    withdrawn: frozenset[str] = field(default_factory=frozenset)
    legacy: bool = False
    sequence: int | None = None  # None: written before indexes were numbered
    expires: datetime | None = None  # UTC; None as for ``sequence``


def expiry(valid_days: int) -> datetime:
    """When an index published now with ``--valid-days`` stops being accepted."""
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        raise BadIndex(f"valid days must be 1 to {MAX_VALID_DAYS}, not {valid_days}")
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=valid_days)


def file_problem(name: object) -> str | None:
    """Why ``name`` cannot be a file in a version folder, or None."""
    if not isinstance(name, str) or not _FILE.fullmatch(name) or ".." in name:
        return f"invalid file name {name!r}"
    return None


def folder_entry(folder: Path) -> dict[str, FileEntry]:
    """Size and sha256 of every file of a published version folder (as served)."""
    out = {}
    for f in sorted(Path(folder).iterdir()):
        if file_problem(f.name) is not None or f.is_symlink() or not f.is_file():
            raise BadIndex(f"{f}: not a plain file; a published version folder holds only its artifact")
        out[f.name] = FileEntry(f.stat().st_size, sha256_file(f))
    if MANIFEST not in out:
        raise BadIndex(f"{folder}: no {MANIFEST}")
    return out


def dumps(index: Index) -> bytes:
    """The bytes of ``index.json`` (the signed bytes: written and served exactly as returned)."""
    if index.legacy:
        raise BadIndex("a legacy index is never written")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "published": datetime.now(UTC).isoformat(timespec="seconds"),
        "current": index.current,
        "withdrawn": sorted(index.withdrawn),
        "versions": {
            v: {"files": {n: {"size": e.size, "sha256": e.sha256} for n, e in sorted((files or {}).items())}}
            for v, files in sorted(index.versions.items())
        },
    }
    if index.sequence is not None:
        doc["sequence"] = index.sequence
    if index.expires is not None:
        doc["expires"] = index.expires.astimezone(UTC).isoformat(timespec="seconds")
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def parse(raw: bytes, where: str) -> Index:
    """Parse and check an index; ``BadIndex`` naming the first problem (``where``: for messages)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadIndex(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadIndex(f"{where}: not a JSON object")
    versions = doc.get("versions")
    if "format" not in doc and isinstance(versions, list):
        return Index({_version(v, where): None for v in versions}, legacy=True)
    if doc.get("format") != FORMAT:
        raise BadIndex(f"{where}: format {doc.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(versions, dict):
        raise BadIndex(f"{where}: 'versions' is not an object")
    parsed: dict[str, dict[str, FileEntry] | None] = {
        _version(v, where): _files(v, entry, where) for v, entry in versions.items()
    }
    withdrawn = doc.get("withdrawn", [])
    if not isinstance(withdrawn, list):
        raise BadIndex(f"{where}: 'withdrawn' is not a list")
    gone = frozenset(_version(v, where) for v in withdrawn)
    if gone & parsed.keys():
        raise BadIndex(f"{where}: versions both offered and withdrawn: {sorted(gone & parsed.keys())}")
    current = doc.get("current")
    if current is not None and current not in parsed:
        raise BadIndex(f"{where}: current version {current!r} is not among the versions offered")
    return Index(parsed, current, gone, sequence=_sequence(doc, where), expires=_expires(doc, where))


def _sequence(doc: dict[str, Any], where: str) -> int | None:
    value = doc.get("sequence")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadIndex(f"{where}: 'sequence' is not a non-negative integer: {value!r}")
    return value


def _expires(doc: dict[str, Any], where: str) -> datetime | None:
    value = doc.get("expires")
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadIndex(f"{where}: 'expires' is not an ISO 8601 time with its UTC offset: {value!r}")
    return when.astimezone(UTC)


def _version(name: object, where: str) -> str:
    problem = version_problem(name)
    if problem is not None:
        raise BadIndex(f"{where}: {problem}")
    assert isinstance(name, str)
    return name


def _files(version: str, entry: Any, where: str) -> dict[str, FileEntry]:
    files = entry.get("files") if isinstance(entry, dict) else None
    if not isinstance(files, dict) or MANIFEST not in files:
        raise BadIndex(f"{where}: version {version}: no 'files' object listing {MANIFEST}")
    out = {}
    for name, fe in files.items():
        problem = file_problem(name)
        if problem is not None:
            raise BadIndex(f"{where}: version {version}: {problem}")
        size = fe.get("size") if isinstance(fe, dict) else None
        digest = fe.get("sha256") if isinstance(fe, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadIndex(f"{where}: version {version}: {name}: 'size' is not a byte count")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BadIndex(f"{where}: version {version}: {name}: 'sha256' is not a sha256 hex digest")
        out[name] = FileEntry(size, digest)
    return out


def sign(raw: bytes, key: Ed25519PrivateKey) -> bytes:
    """The contents of ``index.json.ed25519`` for index bytes ``raw``."""
    return base64.b64encode(key.sign(raw)) + b"\n"


def verify(raw: bytes, signature: bytes, key: Ed25519PublicKey, where: str) -> None:
    """``SignatureError`` unless ``signature`` is ``key``'s signature over ``raw``."""
    try:
        sig = base64.b64decode(signature.strip(), validate=True)
    except ValueError as exc:
        raise SignatureError(f"{where}: {INDEX_SIGNATURE} is not a base64 signature") from exc
    try:
        key.verify(sig, raw)
    except InvalidSignature as exc:
        raise SignatureError(f"{where}: {INDEX} signature does not match (tampered, or another key)") from exc
