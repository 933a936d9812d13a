"""A folder of model versions with an atomically switched pointer to the active one.

    models/
      20261129-014045-b48ccbaa/     one artifact per version (immutable)
      20261130-020000-1c2d3e4f/
      ACTIVE                        the active version's name (replaced with rename(2): atomic)
      HISTORY                       one line per activation: ISO time, version (for rollback)

Activation verifies the version first (checksums, feature version, and the
signature when a public key is configured); a version that fails is never
made active.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from model.artifact import MANIFEST, Artifact, ArtifactError, load_artifact

ACTIVE = "ACTIVE"
HISTORY = "HISTORY"


class RegistryError(ValueError):
    """A registry operation that cannot be done (named version and why)."""


class ModelRegistry:
    """Versions under ``root``; ``verify`` (e.g. a signature check) runs before activation."""

    def __init__(self, root: Path | str, verify: Callable[[Path], None] | None = None) -> None:
        self.root = Path(root)
        self.verify = verify

    def versions(self) -> list[str]:
        """Version names, oldest first (names sort by creation time)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and (p / MANIFEST).is_file() and not p.name.startswith(".")
        )

    def path(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"invalid version name {version!r}")
        return self.root / version

    def active(self) -> str | None:
        try:
            name = (self.root / ACTIVE).read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def active_path(self) -> Path | None:
        name = self.active()
        return self.path(name) if name else None

    def load(self, version: str) -> Artifact:
        """Load and verify a version (checksums, feature version, signature if configured)."""
        path = self.path(version)
        if not path.is_dir():
            raise RegistryError(f"no version {version!r} in {self.root}")
        artifact = load_artifact(path)
        if self.verify is not None:
            self.verify(path)
        return artifact

    def _write_pointer(self, version: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".active-", dir=self.root)
        with os.fdopen(fd, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / ACTIVE)
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
            lines = (self.root / HISTORY).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split()[-1] for line in lines if line.strip()]

    def rollback(self) -> str:
        """Re-activate the version active before the current one."""
        current = self.active()
        for version in reversed(self.history()):
            if version != current and (self.root / version).is_dir():
                self.activate(version)
                return version
        raise RegistryError("no earlier version to roll back to")

    def add(self, src: Path) -> str:
        """Copy an artifact folder into the registry (verified; atomic rename); returns its version."""
        artifact = load_artifact(src)
        if self.verify is not None:
            self.verify(Path(src))
        version = artifact.version
        dest = self.path(version)
        if dest.exists():
            return version
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=self.root))
        try:
            for f in Path(src).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
            tmp.chmod(0o755)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions, never the active one."""
        if keep < 1:
            raise RegistryError("keep must be >= 1")
        active = self.active()
        old = [v for v in self.versions()[:-keep] if v != active]
        for v in old:
            shutil.rmtree(self.path(v))
        return old
