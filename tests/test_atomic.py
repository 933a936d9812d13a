"""model.atomic: the one temp-then-rename (issue 18); a reader never sees half a file or folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spamgate.model import atomic


def test_write_file_replaces_durably_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = atomic.fsync_dir

    def recording_fsync_dir(path: Path) -> None:
        synced.append(str(path))
        real(path)

    monkeypatch.setattr(atomic, "fsync_dir", recording_fsync_dir)
    target = tmp_path / "ACTIVE"
    target.write_text("old\n")
    atomic.write_file(target, b"new\n", mode=0o600)
    assert target.read_bytes() == b"new\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert synced == [str(tmp_path)]  # the rename itself is made durable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ACTIVE"]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "index.json"
    target.write_text("old")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_file(target, b"new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["index.json"]


def test_staged_dir_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "v1"
    with pytest.raises(RuntimeError), atomic.staged_dir(target) as tmp:
        (tmp / "weights.npz").write_bytes(b"x")
        raise RuntimeError("trainer crashed")
    assert list(tmp_path.iterdir()) == []  # no target, no leftover temp folder
    with atomic.staged_dir(target) as tmp:
        (tmp / "weights.npz").write_bytes(b"x")
        (tmp / "manifest.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "weights.npz"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    with pytest.raises(FileExistsError), atomic.staged_dir(target) as tmp:
        (tmp / "weights.npz").write_bytes(b"y")
    assert (target / "weights.npz").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]
