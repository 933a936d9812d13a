"""Reloads never queue up behind a slow one, and a list file that is not a regular file is refused."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import spamgate.service.policy.policy_file as policy_file
from spamgate.service.policy.policy_file import PolicyHolder, parse_policy
from spamgate.service.policy.settings import PolicyError


def _policy(tmp_path: Path, list_name: str = "block.txt") -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(f'[block]\nclient_ips_file = "{list_name}"\n')
    return p


def test_a_reload_during_a_reload_returns_at_once_and_the_file_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "block.txt").write_text("192.0.2.1\n")
    holder = PolicyHolder(_policy(tmp_path))
    started, release = threading.Event(), threading.Event()
    real = policy_file.parse_policy
    calls: list[float] = []

    def slow_parse(path: Path) -> object:
        calls.append(time.monotonic())
        if len(calls) == 1:
            started.set()
            release.wait(10)
        return real(path)

    monkeypatch.setattr(policy_file, "parse_policy", slow_parse)
    first = threading.Thread(target=holder.reload)
    first.start()
    assert started.wait(10)
    t = time.monotonic()
    results = [holder.reload() for _ in range(5)]  # would each have waited for the lock before
    assert time.monotonic() - t < 0.5
    assert all(not r.reloaded and "already running" in r.errors[0] for r in results)
    (tmp_path / "block.txt").write_text("192.0.2.1\n198.51.100.7\n")  # the admin's newer file
    release.set()
    first.join(10)
    assert len(calls) == 2  # the asked-for reloads ran once more, after the first ended
    assert holder.current().block.match_ip("198.51.100.7")


def test_a_fifo_list_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "block.txt")
    t = time.monotonic()
    with pytest.raises(PolicyError, match="not a regular file"):
        parse_policy(_policy(tmp_path))
    assert time.monotonic() - t < 2


def test_an_oversize_list_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_file, "MAX_FILE_BYTES", 1000)
    (tmp_path / "block.txt").write_text("192.0.2.1\n" * 200)
    with pytest.raises(PolicyError, match="larger than 1000 bytes"):
        parse_policy(_policy(tmp_path))
