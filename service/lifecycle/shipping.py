"""Publishing model versions to a distribution point, and pulling them on gateways.

Layout of a distribution point (a folder, or the same files behind any static
HTTP(S) server):

    index.json               what is offered: every version's files with size and sha256,
                             the version marked ``current``, the ``withdrawn`` ones (ship_index)
    index.json.ed25519       the publisher's signature over index.json (when published with a key)
    <version>/manifest.json
    <version>/signature.ed25519
    <version>/<every file the manifest lists>

``pull`` reads the index first (at most 1 MiB) and, given a public key,
checks its signature before anything else; a signed index must carry a
sequence number and an expiry, and one numbered lower than the last this
registry accepted, or expired, is refused (``service.lifecycle.pull_state``: an old
signed index replayed by a mirror cannot bring back a withdrawn version, and a
version once seen withdrawn is never activated by a pull). It then refuses the pull if the
new versions add up to more than ``max_bytes``, and streams each file into a
folder staged inside the registry with the index's size as its cap, checking
its sha256 against the index; per version the manifest comes first (its
version must equal the index name) and its signature is checked before the
large files are fetched. Only when every new version has verified (artifact
checksums, signature) are they renamed into place: a pull that fails leaves
nothing behind.

Every read has a deadline (``_Clock``): the whole pull must be done within
``timeout`` seconds, and each file within 30 s plus its size at ``min_rate``
bytes/s, so a server that drips bytes cannot hold a pull (and the cron job or
timer running it) forever.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from spamgate.model import atomic
from spamgate.model.artifact import MANIFEST, ArtifactError, load_artifact
from spamgate.model.errors import DataError
from spamgate.model.signing import SIGNATURE, SignatureError, sign_artifact, verify_artifact
from spamgate.service.lifecycle import pull_state, ship_index
from spamgate.service.lifecycle.download import Deadline, FetchError, fetch_bytes, fetch_file, location
from spamgate.service.lifecycle.model_registry import ModelRegistry, RegistryError, version_problem
from spamgate.service.lifecycle.pull_state import PullStateError
from spamgate.service.lifecycle.ship_index import (
    DEFAULT_VALID_DAYS,
    INDEX,
    INDEX_SIGNATURE,
    BadIndex,
    FileEntry,
    Index,
)

DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # all files of one pull together (--max-bytes)
INDEX_MAX_BYTES = 1024 * 1024  # ~4,000 versions at ~250 bytes each: far beyond any real index
SIGNATURE_MAX_BYTES = 1024  # a base64 Ed25519 signature is 89 bytes
MANIFEST_MAX_BYTES = 4 * 1024 * 1024  # the bundled model's manifest is 26 KB
FILE_MAX_BYTES = 512 * 1024 * 1024  # what load_artifact accepts for one file
# --timeout: a whole pull of the default 512 MiB cap then needs ~0.9 MB/s; the bundled model (2.3 MB)
# takes well under a second on a LAN. --min-rate: each file gets GRACE_SECONDS (a first byte may take
# as long as the socket timeout) plus its size at this rate: 30 + 36 s for the bundled model's weights.
DEFAULT_TIMEOUT = 600.0
DEFAULT_MIN_RATE = 64 * 1024
GRACE_SECONDS = 30.0


class ShippingError(DataError, ValueError):
    """A publish or pull that cannot be done (what and why)."""


@dataclass(frozen=True)
class PullResult:
    """What a pull did, and what the publisher's index says."""

    new: list[str]  # versions added to the registry, oldest first
    current: str | None  # the version the publisher marks current (None: none marked, or a legacy index)
    withdrawn_here: list[str]  # versions in the registry that the publisher has withdrawn (now or before)
    signed: bool  # the index's signature was checked against a public key
    seen_withdrawn: frozenset[str] = frozenset()  # every version this registry has seen withdrawn


def activation_refusal(result: PullResult, version: str) -> str | None:
    """Why a pull must not activate ``version``, or None: once withdrawn, never again by a pull."""
    if version not in result.seen_withdrawn:
        return None
    return (
        f"{version} was withdrawn by the publisher in an index accepted earlier; never activated by a pull "
        f"(spamgate models activate {version}, by hand, if it is meant)"
    )


def publish(
    version_dir: Path,
    dest: Path,
    key: Ed25519PrivateKey | None = None,
    make_current: bool = True,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> str:
    """Copy a verified version into a distribution folder and rewrite the index (signed with ``key``).

    The version becomes ``current`` unless ``make_current`` is False (publishing an older version
    again moves ``current`` back: a recall); publishing a withdrawn version offers it again (gateways
    that saw it withdrawn fetch it but never activate it by a pull). With a key, the published copy
    of an unsigned version is signed, and one signed by another key refused. The index's sequence
    goes up by one and it expires ``valid_days`` from now: publishing an offered version again with
    ``make_current`` False only renews the index.
    """
    dest = Path(dest)
    _check_writable_index(dest, key)
    expires = _expiry(valid_days)
    try:
        artifact = load_artifact(version_dir)
        if key is not None and (Path(version_dir) / SIGNATURE).exists():
            verify_artifact(version_dir, key.public_key())
    except SignatureError as exc:
        raise ShippingError(f"{exc} (not this key's signature)") from exc
    version = artifact.version
    problem = version_problem(version)
    if problem is not None:
        raise ShippingError(f"{version_dir}: {problem}")
    assert isinstance(version, str)
    index = _read_local_index(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / version
    if not target.exists():
        with atomic.staged_dir(target, prefix=".publish-") as tmp:
            for f in Path(version_dir).iterdir():
                shutil.copy2(f, tmp / f.name, follow_symlinks=False)
            if key is not None and not (tmp / SIGNATURE).exists():
                sign_artifact(tmp, key)
    elif (target / MANIFEST).read_bytes() != (Path(version_dir) / MANIFEST).read_bytes():
        raise ShippingError(f"{target} is already published with another manifest; versions are immutable")
    elif key is not None and not (target / SIGNATURE).exists():
        sign_artifact(target, key)
    current = version if make_current else index.current
    offered = set(index.versions) | {version}
    new = Index(
        _entries(dest, offered, key),
        current,
        index.withdrawn - {version},
        sequence=_next_sequence(index),
        expires=expires,
    )
    _write_index(dest, new, key)
    return version


def withdraw(
    dest: Path,
    version: str,
    key: Ed25519PrivateKey | None = None,
    current: str | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> Index:
    """Stop offering ``version`` and list it as withdrawn; returns the new index.

    If it was ``current``, ``current`` moves to ``current`` if given, else to the newest version
    still offered: gateways with ``--activate auto`` leave the withdrawn version on their next pull.
    The sequence goes up by one, so gateways that read this index refuse every earlier one.
    """
    dest = Path(dest)
    _check_writable_index(dest, key)
    expires = _expiry(valid_days)
    index = _read_local_index(dest)
    if version not in index.versions and version not in index.withdrawn:
        raise ShippingError(f"{version} is not published in {dest}")
    offered = set(index.versions) - {version}
    if current is not None and current not in offered:
        raise ShippingError(f"{current} is not offered in {dest}; it cannot be current")
    if current is None:
        current = index.current if index.current in offered else max(offered, default=None)
    new = Index(
        _entries(dest, offered, key),
        current,
        index.withdrawn | {version},
        sequence=_next_sequence(index),
        expires=expires,
    )
    _write_index(dest, new, key)
    return new


def _expiry(valid_days: int) -> datetime:
    try:
        return ship_index.expiry(valid_days)
    except BadIndex as exc:
        raise ShippingError(str(exc)) from exc


def _next_sequence(index: Index) -> int:
    """One more than the index being replaced (1 over an index written before numbering)."""
    return (index.sequence or 0) + 1


def _check_writable_index(dest: Path, key: Ed25519PrivateKey | None) -> None:
    if key is None and (dest / INDEX_SIGNATURE).exists():
        raise ShippingError(
            f"{dest / INDEX} is signed; give the signing key (--key), or its signature would go stale"
        )


def _read_local_index(dest: Path) -> Index:
    try:
        raw = (dest / INDEX).read_bytes()
    except FileNotFoundError:
        return Index({})
    except OSError as exc:
        raise ShippingError(f"{dest / INDEX}: {exc.strerror}") from exc
    try:
        return ship_index.parse(raw, str(dest / INDEX))
    except BadIndex as exc:
        raise ShippingError(str(exc)) from exc


def _entries(dest: Path, versions: set[str], key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """Each offered version's files as they lie in ``dest`` now (a folder signed since is listed so)."""
    out: dict[str, Any] = {}
    for v in sorted(versions):
        folder = dest / v
        try:
            artifact = load_artifact(folder)
            if artifact.version != v:
                raise ShippingError(f"{folder}: manifest says version {artifact.version!r}")
            if key is not None:
                verify_artifact(folder, key.public_key())
            out[v] = ship_index.folder_entry(folder)
        except SignatureError as exc:
            raise ShippingError(
                f"{exc}: sign it (spamgate models sign --key …) or withdraw it (spamgate models withdraw)"
            ) from exc
        except (ArtifactError, BadIndex) as exc:
            raise ShippingError(f"published version {v}: {exc}") from exc
    return out


def _write_index(dest: Path, index: Index, key: Ed25519PrivateKey | None) -> None:
    raw = ship_index.dumps(index)
    # Index, then its signature: a gateway reading between the two renames sees a signature
    # mismatch, fails that pull with a clear error and gets both on its next run.
    _atomic_write(dest / INDEX, raw)
    if key is not None:
        _atomic_write(dest / INDEX_SIGNATURE, ship_index.sign(raw, key))


def _atomic_write(path: Path, data: bytes) -> None:
    atomic.write_file(path, data)


def plain_http_refusal(source: str) -> str | None:
    """Why an unsigned pull from ``source`` needs ``--allow-unsigned``, or None."""
    if not source.startswith("http://"):
        return None
    return (
        f"{source}: plain http:// without --public-key: anyone on the path could plant a model; "
        "give --public-key, use https://, or say --allow-unsigned"
    )


def pull(
    source: str,
    registry: ModelRegistry,
    public_key: Ed25519PublicKey | None = None,
    *,
    allow_unsigned: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
    min_rate: int = DEFAULT_MIN_RATE,
) -> PullResult:
    """Fetch every version the index offers and the registry lacks (all or none of them).

    With ``public_key`` the index and every artifact must carry its signature. Without one, an
    http:// source or a legacy index is refused unless ``allow_unsigned``. The pull is abandoned
    after ``timeout`` seconds, and a file arriving slower than ``min_rate`` bytes/s (``_Clock``).
    """
    if public_key is not None and allow_unsigned:
        raise ShippingError("a public key and allow-unsigned exclude each other")
    refusal = None if allow_unsigned or public_key is not None else plain_http_refusal(source)
    if refusal is not None:
        raise ShippingError(refusal)
    if max_bytes < 1:
        raise ShippingError(f"max bytes must be positive, not {max_bytes}")
    if not (math.isfinite(timeout) and timeout > 0) or min_rate < 1:
        raise ShippingError(f"timeout and min rate must be positive, not {timeout} s and {min_rate} bytes/s")
    clock = _Clock(timeout, min_rate)
    where = location(source, INDEX)
    try:
        raw = fetch_bytes(source, INDEX, INDEX_MAX_BYTES, clock.deadline(INDEX_MAX_BYTES))
        index = ship_index.parse(raw, where)
        if index.legacy and not allow_unsigned:
            raise ShippingError(
                f"{where}: an old-format index (no sizes, hashes, current version or signature); "
                "the publisher should publish again with this release, or pull with --allow-unsigned"
            )
        if public_key is not None:
            try:
                sig = fetch_bytes(
                    source, INDEX_SIGNATURE, SIGNATURE_MAX_BYTES, clock.deadline(SIGNATURE_MAX_BYTES)
                )
            except FetchError as exc:
                raise ShippingError(f"{where}: unsigned index, or its signature unreadable ({exc})") from exc
            ship_index.verify(raw, sig, public_key, where)
            if index.sequence is None or index.expires is None:
                raise ShippingError(
                    f"{where}: a signed index with no sequence number and expiry (written by an earlier "
                    "release) could be an old one replayed; the publisher should publish again"
                )
        before = pull_state.load(registry.root)
        pull_state.check(index, before, where)
        state = before.after(index)
        # Remembered before fetching (a failed fetch keeps what the index said), and only what a signed
        # index said: a pull without --public-key from a mirror that wrote sequence 10**100 (or listed
        # the real versions as withdrawn) made every later signed pull from the publisher fail as
        # "older than the last accepted here" until PULL_STATE was deleted (pull review). An unsigned
        # index is still checked against the signed state and its own withdrawn list applies to it.
        if public_key is not None and state != before:
            pull_state.save(registry.root, state)
        have = set(registry.versions())
        todo = [v for v in sorted(index.versions) if v not in have]
        _check_sizes(index, todo, max_bytes)
        new = _fetch_all(source, index, todo, registry, public_key, _Budget(max_bytes), clock)
    except (FetchError, BadIndex, ArtifactError, RegistryError, PullStateError) as exc:
        raise ShippingError(str(exc)) from exc
    except OSError as exc:  # writing the state file
        raise ShippingError(f"{registry.root}: {exc.strerror or exc}") from exc
    withdrawn_here = sorted(state.withdrawn & set(registry.versions()))
    return PullResult(new, index.current, withdrawn_here, public_key is not None, state.withdrawn)


class _Budget:
    """Bytes a pull may still write (``--max-bytes``)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.left = total

    def spend(self, n: int, where: str) -> None:
        self.left -= n
        if self.left < 0:
            raise ShippingError(f"{where}: the pull went over {self.total} bytes (--max-bytes); abandoned")


class _Clock:
    """Deadlines of one pull: all of it by ``timeout`` s from now, each file by its own.

    A file's own deadline is ``GRACE_SECONDS`` plus its size (the index's, else its cap) at
    ``min_rate``: a server dripping bytes is given up on within a minute for a small file rather
    than at the end of the whole pull's time.
    """

    def __init__(self, timeout: float, min_rate: int) -> None:
        self.timeout = timeout
        self.min_rate = min_rate
        self.end = time.monotonic() + timeout

    def deadline(self, size: int) -> Deadline:
        own = time.monotonic() + GRACE_SECONDS + size / self.min_rate
        if own < self.end:
            return Deadline(
                own,
                f"its deadline at --min-rate {self.min_rate} bytes/s ({GRACE_SECONDS:g} s + {size} bytes)",
            )
        return Deadline(self.end, f"the pull's --timeout of {self.timeout:g} s")


def _check_sizes(index: Index, todo: list[str], max_bytes: int) -> None:
    """Refuse before fetching anything when the index's sizes are over a limit."""
    total = 0
    for v in todo:
        files = index.versions[v]
        if files is None:
            continue  # legacy: capped file by file while fetching
        for name, e in files.items():
            cap = {MANIFEST: MANIFEST_MAX_BYTES, SIGNATURE: SIGNATURE_MAX_BYTES}.get(name, FILE_MAX_BYTES)
            if e.size > cap:
                raise ShippingError(f"{v}/{name}: the index says {e.size} bytes, over the limit of {cap}")
            total += e.size
    if total > max_bytes:
        raise ShippingError(
            f"the {len(todo)} new version(s) add up to {total} bytes, over the limit of {max_bytes} "
            "(--max-bytes); nothing fetched"
        )


def _fetch_all(
    source: str,
    index: Index,
    todo: list[str],
    registry: ModelRegistry,
    key: Ed25519PublicKey | None,
    budget: _Budget,
    clock: _Clock,
) -> list[str]:
    if not todo:
        return []
    registry.root.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, str]] = []
    try:
        for v in todo:
            # Staged inside the registry: the final rename stays on one file system (atomic).
            tmp = Path(tempfile.mkdtemp(prefix=".pull-", dir=registry.root))
            staged.append((tmp, v))
            _stage(source, v, index.versions[v], tmp, key, budget, clock)
        return registry.install_all(staged)
    finally:
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)


def _stage(
    source: str,
    version: str,
    files: dict[str, FileEntry] | None,
    tmp: Path,
    key: Ed25519PublicKey | None,
    budget: _Budget,
    clock: _Clock,
) -> None:
    """Fetch one version into ``tmp``: manifest, signature (checked), then the files it lists."""

    def get(name: str, want: FileEntry | None, cap: int) -> None:
        rel = f"{version}/{name}"
        limit = cap if want is None else want.size
        size, digest = fetch_file(source, rel, tmp / name, limit, clock.deadline(limit))
        budget.spend(size, location(source, rel))
        if want is not None and (size, digest) != (want.size, want.sha256):
            raise ShippingError(
                f"{location(source, rel)}: {size} bytes with sha256 {digest}; "
                f"the index says {want.size} bytes with sha256 {want.sha256}"
            )

    get(MANIFEST, files[MANIFEST] if files else None, min(MANIFEST_MAX_BYTES, budget.left))
    manifest = _read_manifest(tmp / MANIFEST, location(source, f"{version}/{MANIFEST}"))
    if manifest.get("version") != version:
        raise ShippingError(
            f"{version}: its manifest says version {manifest.get('version')!r}; refused, nothing kept"
        )
    listed = manifest.get("files")
    if not isinstance(listed, dict) or any(
        ship_index.file_problem(n) or n in (MANIFEST, SIGNATURE) for n in listed
    ):
        raise ShippingError(f"{version}: its manifest's 'files' is not a list of plain file names")
    if files is not None:
        expected = set(listed) | {MANIFEST} | ({SIGNATURE} & set(files))
        if set(files) != expected or any(files[n].sha256 != d for n, d in listed.items()):
            raise ShippingError(f"{version}: the index and the manifest disagree on its files")
        if SIGNATURE in files:
            get(SIGNATURE, files[SIGNATURE], SIGNATURE_MAX_BYTES)
    else:
        try:
            get(SIGNATURE, None, SIGNATURE_MAX_BYTES)
        except FetchError:
            (tmp / SIGNATURE).unlink(missing_ok=True)  # legacy: unsigned versions are allowed (no key)
    if key is not None:
        # Before the large files: a forged version costs a manifest, not its weights.
        try:
            verify_artifact(tmp, key)
        except SignatureError as exc:
            # Named by where it came from: the staging folder (".pull-ocyw914j: unsigned") is gone
            # by the time the operator reads the message, and named no version (pull review).
            raise ShippingError(str(exc).replace(str(tmp), location(source, version))) from exc
    for name in sorted(listed):
        get(name, files[name] if files else None, min(FILE_MAX_BYTES, budget.left))


def _read_manifest(path: Path, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise ShippingError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ShippingError(f"{where}: not a JSON object")
    return manifest
