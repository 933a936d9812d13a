"""Hostile input at the service boundary: bounded memory, capped fields and log lines, stream quotas."""

from __future__ import annotations

import pytest

from service.config import ConfigError, load_config
from service.feedback import RecentMessages


def test_recent_verdicts_bounded_by_bytes_oldest_first() -> None:
    cache = RecentMessages(capacity=1000, max_bytes=10_000)
    for i in range(5):
        cache.put(f"v{i}", bytes([i]) * 3_000, {"i": i})
    assert cache.total_bytes <= 10_000
    assert [k for k in ("v0", "v1", "v2", "v3", "v4") if cache.get(k)] == ["v2", "v3", "v4"]
    raw, verdict = cache.get("v4") or (b"", {})
    assert raw == b"\x04" * 3_000 and verdict == {"i": 4}
    cache.put("v3", b"x" * 3_000, {"i": 3})  # the same id again replaces, not double-counts
    assert cache.total_bytes == 9_000 and len(cache) == 3
    cache.put("huge", b"y" * 10_001, {})  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 3
    cache.put("big", b"z" * 8_000, {})  # evicts as many of the oldest as it takes
    assert cache.total_bytes == 8_000 and cache.get("v4") is None and cache.get("big")


def test_recent_verdicts_count_cap_still_holds() -> None:
    cache = RecentMessages(capacity=2, max_bytes=1 << 20)
    for i in range(4):
        cache.put(f"v{i}", b"m", {})
    assert len(cache) == 2 and cache.get("v3") and cache.get("v1") is None
    assert RecentMessages(capacity=0).get("x") is None


def test_new_config_keys_defaults_and_validation() -> None:
    cfg = load_config(None)
    assert (cfg.server.stream_idle_seconds, cfg.server.stream_max_seconds) == (30.0, 600.0)
    assert cfg.server.max_streams_per_peer == 2 and cfg.server.stream_cap == cfg.server.workers // 2
    assert cfg.feedback.recent_verdict_bytes == 64 * 1024 * 1024
    with pytest.raises(ConfigError) as e:
        load_config(
            None,
            {
                "server": {
                    "workers": 4,
                    "max_streams": 4,
                    "stream_idle_seconds": 0,
                    "max_streams_per_peer": 0,
                },
                "feedback": {"recent_verdict_bytes": -1},
            },
        )
    text = "\n".join(e.value.errors)
    for key in ("max_streams", "stream_idle_seconds", "max_streams_per_peer", "recent_verdict_bytes"):
        assert key in text
