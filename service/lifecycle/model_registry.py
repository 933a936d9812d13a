"""A folder of model versions with an atomically switched pointer to the active one.

    models/
      20261129-014045-b48ccbaa/     one artifact per version (immutable)
      20261130-020000-1c2d3e4f/
      ACTIVE                        the active version's name (replaced with rename(2): atomic)
      HISTORY                       one line per activation: ISO time, version (for rollback)
      PULL_STATE                    what ``models pull`` has accepted: the publisher's last index
                                    sequence, every version seen withdrawn (service.lifecycle.pull_state)

Activation verifies the version first (checksums, feature version, the
manifest's version equal to the folder name, and the signature when a public
key is configured); a version that fails is never made active.

Version names are strict (``VERSION_PATTERN``, never ``ACTIVE``/``HISTORY``/``PULL_STATE``):
a folder whose name does not match is ignored by every operation and shown as
invalid by ``spamgate models list``. A version is only ever put in place by
renaming a verified folder staged inside the registry (``install``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from spamgate.model import atomic
from spamgate.model.artifact import MANIFEST, Artifact, ArtifactError, load_artifact
from spamgate.model.errors import DataError
from spamgate.model.signing import check_signed

ACTIVE = "ACTIVE"
HISTORY = "HISTORY"
# Not dot-named like the temp folders: a leftover ".pull-…" is a failed pull's, this file is kept.
PULL_STATE = "PULL_STATE"
_OWN_FILES = (ACTIVE, HISTORY, PULL_STATE)
# Letters, digits, '.', '_', '-'; no leading dot (temp folders are dot-named), at most 128 characters.
# Trained versions look like 20261129-014045-b48ccbaa.
VERSION_PATTERN = r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}"
_VERSION = re.compile(VERSION_PATTERN)
# Compared case-folded: on a case-insensitive file system "active" would be the pointer file.
_RESERVED = frozenset(name.casefold() for name in _OWN_FILES)


class RegistryError(DataError, ValueError):
    """A registry operation that cannot be done (named version and why)."""


def version_problem(name: object) -> str | None:
    """Why ``name`` cannot be a version name, or None when it can."""
    if not isinstance(name, str) or not _VERSION.fullmatch(name):
        return f"invalid version name {name!r} (allowed: {VERSION_PATTERN})"
    if ".." in name:
        return f"invalid version name {name!r} (contains '..')"
    if name.casefold() in _RESERVED:
        return f"invalid version name {name!r} (reserved for the registry's own files)"
    return None


def check_version(name: object) -> str:
    """``name`` if it is a valid version name; ``RegistryError`` saying why not otherwise."""
    problem = version_problem(name)
    if problem is not None:
        raise RegistryError(problem)
    assert isinstance(name, str)
    return name


class ModelRegistry:
    """Versions under ``root``; ``verify`` (e.g. a signature check) runs before activation."""

    def __init__(self, root: Path | str, verify: Callable[[Path], str | None] | None = None) -> None:
        self.root = Path(root)
        self.verify = verify

    def versions(self) -> list[str]:
        """Version names, oldest first (names sort by creation time)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if version_problem(p.name) is None
            and not p.is_symlink()
            and p.is_dir()
            and (p / MANIFEST).is_file()
        )

    def invalid_entries(self) -> list[tuple[str, str]]:
        """(name, why) for every entry of the registry folder that is neither a version nor ours.

        Dot-named entries are the registry's own (temp folders, ``.reports``) and are not listed.
        """
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.iterdir()):
            if p.name.startswith("."):
                continue
            if p.name in _OWN_FILES:
                if p.is_symlink() or not p.is_file():
                    out.append((p.name, "should be a plain file (the registry's own); remove it"))
                elif p.name == ACTIVE and self.active() is None:
                    out.append((p.name, "does not name a valid version; no version is active"))
                continue
            problem = version_problem(p.name)
            if problem is None and p.is_symlink():
                problem = "a symlink, not a version folder"
            elif problem is None and not (p.is_dir() and (p / MANIFEST).is_file()):
                problem = f"not a version folder (no {MANIFEST})"
            if problem is not None:
                out.append((p.name, problem))
        return out

    def path(self, version: str) -> Path:
        return self.root / check_version(version)

    def active(self) -> str | None:
        """The ACTIVE pointer's version; None when there is none or it is not a valid name.

        Never raises: ``serve`` and the watcher read it, and a planted ``ACTIVE`` folder
        or garbage in the file must read as "nothing active", not crash them.
        """
        try:
            name = (self.root / ACTIVE).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return name if version_problem(name) is None else None

    def active_path(self) -> Path | None:
        name = self.active()
        return self.path(name) if name else None

    def load(self, version: str) -> Artifact:
        """Load and verify a version (checksums, feature version, signature if configured)."""
        path = self.path(version)
        if path.is_symlink() or not path.is_dir():
            raise RegistryError(f"no version {version!r} in {self.root}")
        artifact = load_artifact(path)
        if artifact.version != version:
            raise RegistryError(
                f"{path}: manifest says version {artifact.version!r}, not the folder's name"
            )
        if self.verify is not None:
            check_signed(artifact, self.verify(path))  # the manifest verified is the one loaded
        return artifact

    def _write_pointer(self, version: str) -> None:
        for name in (ACTIVE, HISTORY):
            if (self.root / name).is_symlink() or (self.root / name).is_dir():
                raise RegistryError(f"{self.root / name} is not a plain file (planted?); remove it first")
        atomic.write_file(self.root / ACTIVE, (version + "\n").encode())
        with open(self.root / HISTORY, "a") as h:
            h.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {version}\n")
            h.flush()
            os.fsync(h.fileno())

    def activate(self, version: str) -> Artifact:
        """Verify, then point ACTIVE at ``version``."""
        try:
            artifact = self.load(version)
        except ArtifactError as exc:
            raise RegistryError(f"cannot activate {version}: {exc}") from exc
        self._write_pointer(version)
        return artifact

    def history(self) -> list[str]:
        try:
            lines = (self.root / HISTORY).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        return [w[-1] for w in (line.split() for line in lines) if w and version_problem(w[-1]) is None]

    def rollback(self) -> str:
        """Re-activate the version active before the current one."""
        current = self.active()
        for version in reversed(self.history()):
            if version != current and version in self.versions():
                self.activate(version)
                return version
        raise RegistryError("no earlier version to roll back to")

    def add(self, src: Path) -> str:
        """Copy an artifact folder into the registry (verified; atomic rename); returns its version."""
        artifact = load_artifact(src)  # a clear error about the source itself, before copying anything
        if self.verify is not None:
            self.verify(Path(src))
        version = check_version(artifact.version)
        if self.path(version).exists():
            return version
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=self.root))
        try:
            for f in Path(src).iterdir():
                shutil.copy2(f, tmp / f.name, follow_symlinks=False)
            return self.install(tmp, version)  # verifies the copy: the source may change meanwhile
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def install(self, staged: Path, expect: str | None = None) -> str:
        """Verify a folder staged inside the registry and rename it into place; returns its version."""
        return self.install_all([(Path(staged), expect)])[0]

    def install_all(self, staged: Sequence[tuple[Path, str | None]]) -> list[str]:
        """Verify every staged folder, then rename them all into place; returns their versions.

        The one way a version appears. A folder failing any check (artifact, signature, a version
        name that is invalid or differs from the expected one, a name already taken) is refused
        before any is moved, and left to the caller to delete: nothing unverified is ever visible
        under a version name.
        """
        root = self.root.resolve()
        versions = []
        for folder, expect in staged:
            if folder.parent.resolve() != root:
                raise RegistryError(f"{folder}: not staged inside {self.root}")
            artifact = load_artifact(folder)
            version = check_version(artifact.version)
            if expect is not None and version != expect:
                raise RegistryError(f"{expect}: manifest says version {version!r}; refused")
            if self.verify is not None:
                check_signed(artifact, self.verify(folder))
            dest = self.root / version
            if dest.exists() or dest.is_symlink() or version in versions:
                raise RegistryError(f"{dest} already exists")
            versions.append(version)
        for (folder, _), version in zip(staged, versions, strict=True):
            atomic.commit_dir(folder, self.root / version)
        return versions

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions, never the active one."""
        if keep < 1:
            raise RegistryError("keep must be >= 1")
        active = self.active()
        old = [v for v in self.versions()[:-keep] if v != active]
        for v in old:
            shutil.rmtree(self.path(v))
        return old
