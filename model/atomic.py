"""Atomic, durable writes: a reader sees the old file or folder or the new one, never half of one.

Written once here (issue 18: temp-then-rename was written four times, with
fsync of the data in some, of the folder in none). The recipe: write into a
temporary name in the same folder (a rename is atomic only within one file
system), fsync what was written, rename over the target, then fsync the
parent folder so the rename itself survives a power cut (without it ext4 may
come back with the old name after a crash, which for the registry's ACTIVE
pointer means the previous model).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def staged_dir(target: Path | str, prefix: str = ".tmp-", mode: int = 0o755) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` when the block ends without error.

    Everything in it is fsynced before the rename; ``target`` must not exist (a
    folder cannot be renamed over a non-empty one, and versions are immutable);
    on error the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield tmp
        commit_dir(tmp, target, mode)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def commit_dir(tmp: Path, target: Path, mode: int = 0o755) -> None:
    """fsync a staged folder's files and itself, rename it to ``target``, fsync the parent."""
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target} already exists")
    tmp.chmod(mode)  # mkdtemp makes 0700; models and versions are read by the service user too
    for f in tmp.iterdir():
        if f.is_file() and not f.is_symlink():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(tmp)
    os.rename(tmp, target)
    fsync_dir(target.parent)
