"""Feedback cannot be flooded, inflated or signed in someone else's name (issue 16)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest

from spamgate.service.api.client import SpamGateClient
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.server import RunningServer, start_server
from spamgate.service.lifecycle.feedback_store import FeedbackStore, StoreFull
from spamgate.service.lifecycle.report_rate import ReportRateLimiter, peer_host, peer_network
from spamgate.service.runtime.config import ConfigError, load_config, with_server
from spamgate.service.scoring.model_holder import ModelHolder
from tests.mail import make

SPAM, HAM = pb.FEEDBACK_LABEL_SPAM, pb.FEEDBACK_LABEL_HAM


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_per_minute_then_refills() -> None:
    clock = FakeClock()
    rl = ReportRateLimiter(per_minute=60, clock=clock)
    assert all(rl.allow("alice") for _ in range(60))
    assert not rl.allow("alice")
    assert rl.allow("bob")  # buckets are per reporter
    clock.now += 1.0  # one second refills one report
    assert rl.allow("alice") and not rl.allow("alice")
    with pytest.raises(ValueError):
        ReportRateLimiter(per_minute=0)


def test_rate_limiter_table_is_bounded() -> None:
    rl = ReportRateLimiter(per_minute=1, max_reporters=100)
    for i in range(10_000):
        rl.allow(f"peer-{i}")
    assert len(rl._buckets) == 100


def test_peer_host() -> None:
    assert peer_host("ipv4:127.0.0.1:53211") == "127.0.0.1"
    assert peer_host("ipv6:[::1]:53211") == "::1"
    assert peer_host("unix:/run/spamgate/admin.sock") == "unix:/run/spamgate/admin.sock"
    # anonymous reporters are counted by network: all of loopback is one, IPv4 /24, IPv6 /64
    assert peer_network("ipv4:127.0.0.2:1") == peer_network("ipv4:127.0.0.11:9") == "loopback"
    assert peer_network("ipv4:198.51.100.7:5") == peer_network("ipv4:198.51.100.200:6") == "198.51.100.0/24"
    assert peer_network("ipv6:[2001:db8:1:2::5]:7") == "2001:db8:1:2::/64"
    assert peer_network("ipv6:[::ffff:198.51.100.7]:7") == "198.51.100.0/24"


def test_store_keeps_only_what_the_parser_reads(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db", max_message_bytes=1000)
    raw = make(body="x" * 50_000)
    stored = store.add(raw, "spam", "alice")
    (kept,) = (r.message.raw for r in store.reports())
    assert kept == raw[:1000] and 1000 < store.stored_bytes < 1000 + 200  # the message and its row
    import hashlib

    assert stored.sha256 == hashlib.sha256(raw).hexdigest()  # the verdict_id of the whole message


def test_store_is_capped_and_the_cap_survives_reopening(tmp_path: Path) -> None:
    store = FeedbackStore(
        tmp_path / "fb.db", max_store_bytes=3600, max_message_bytes=1000, max_reporter_bytes=10**6
    )
    msgs = [make({"Subject": f"m{i}"}, body="y" * 5000) for i in range(4)]
    for m in msgs[:3]:
        store.add(m, "spam", "alice")
    with pytest.raises(StoreFull):
        store.add(msgs[3], "spam", "alice")
    assert store.count() == 3
    store.add(msgs[0], "ham", "admin-socket", role="admin")  # a report on a stored message still counts
    before = store.stored_bytes
    assert 3000 < before <= 3600
    store.close()
    again = FeedbackStore(tmp_path / "fb.db", max_store_bytes=3600, max_message_bytes=1000)
    assert again.stored_bytes == before
    with pytest.raises(StoreFull):
        again.add(msgs[3], "spam", "alice")


def test_older_store_gains_role_and_claim_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE messages (sha256 TEXT PRIMARY KEY, raw BLOB NOT NULL, first_seen TEXT NOT NULL);"
        "CREATE TABLE reports (id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT NOT NULL,"
        " label TEXT NOT NULL, reporter TEXT NOT NULL, reported_at TEXT NOT NULL, verdict TEXT NOT NULL);"
        "INSERT INTO messages VALUES ('abc', x'6869', '2026-01-01');"
        "INSERT INTO reports(sha256, label, reporter, reported_at, verdict)"
        " VALUES ('abc', 'spam', 'cli', 't', '{}');"
    )
    db.commit()
    db.close()
    store = FeedbackStore(path)
    (old,) = store.history("abc")
    assert old["role"] is None and old["claim"] == ""
    assert store.stored_bytes == 2 + len("{}") + len("cli") + 96  # the message and its row


def _start(tmp: Path, feedback: dict[str, Any]) -> RunningServer:
    over: dict[str, dict[str, Any]] = {
        "metrics": {"port": 0},
        "admin": {"socket": str(tmp / "admin.sock"), "anonymous_feedback": True},
        "limits": {"cpu_budget_ms": 0},
        "feedback": {"db": str(tmp / "fb.db"), **feedback},
    }
    cfg = with_server(load_config(None, over), port=0)
    holder = ModelHolder()
    running = start_server(cfg, holder)
    holder.load(cfg.model_path)
    return running


def test_reporter_is_the_caller_and_reports_are_rate_limited(tmp_path: Path) -> None:
    running = _start(tmp_path, {"reports_per_minute": 5})
    try:
        with SpamGateClient(f"127.0.0.1:{running.port}", timeout=10) as anon:
            msg = make({"Subject": "flood"})
            first = anon.stub.ReportFeedback(
                pb.FeedbackRequest(message=msg, label=HAM, reporter="admin@example.net")
            )
            for i in range(4):
                anon.stub.ReportFeedback(pb.FeedbackRequest(message=make({"Subject": f"f{i}"}), label=HAM))
            with pytest.raises(grpc.RpcError) as e:
                anon.stub.ReportFeedback(pb.FeedbackRequest(message=make({"Subject": "f9"}), label=HAM))
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "reports_per_minute" in (e.value.details() or "")
        with SpamGateClient(running.admin_target, timeout=10) as admin:
            # The admin's bucket is its own; its label then stands against the anonymous one.
            admin.stub.ReportFeedback(pb.FeedbackRequest(message=msg, label=SPAM, reporter="someone"))
    finally:
        running.stop(0).wait()
    store = FeedbackStore(tmp_path / "fb.db")
    hist = store.history(first.message_sha256)
    assert [(h["reporter"], h["role"], h["claim"]) for h in hist] == [
        ("anonymous@loopback", None, "admin@example.net"),
        ("admin-socket", "admin", "someone"),
    ]
    standing = {r.message.source: r.message.label for r in store.reports()}
    assert standing[f"feedback:{first.message_sha256}"] == 1


def test_full_store_refuses_with_resource_exhausted(tmp_path: Path) -> None:
    # one ~1.6 KB message (and its row) fits, two do not
    running = _start(tmp_path, {"max_store_bytes": 2500, "max_reporter_bytes": 10**6})
    try:
        with SpamGateClient(f"127.0.0.1:{running.port}", timeout=10) as anon:
            anon.stub.ReportFeedback(pb.FeedbackRequest(message=make(body="z" * 1200), label=SPAM))
            with pytest.raises(grpc.RpcError) as e:
                anon.stub.ReportFeedback(pb.FeedbackRequest(message=make(body="w" * 1200), label=SPAM))
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_store_bytes" in (e.value.details() or "")
    finally:
        running.stop(0).wait()


def test_feedback_limits_are_validated() -> None:
    for key in ("reports_per_minute", "max_store_bytes"):
        with pytest.raises(ConfigError, match=key):
            load_config(None, {"feedback": {key: 0}})


def test_one_standing_report_per_reporter_and_message(tmp_path: Path) -> None:
    """Flipping a label back and forth replaces the reporter's row; it does not grow the store."""
    store = FeedbackStore(tmp_path / "fb.db")
    msg = make({"Subject": "flip"})
    store.add(msg, "spam", "alice", {"spam_probability": 0.9})
    size = store.stored_bytes
    for i in range(50):
        store.add(msg, "ham" if i % 2 == 0 else "spam", "alice", {"spam_probability": 0.9})
    assert store.stored_bytes == size and len(store.history(hashlib.sha256(msg).hexdigest())) == 1
    assert store.add(msg, "spam", "alice").duplicate  # the same label again: nothing written


def test_only_a_verdict_summary_is_stored(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    verdict = {
        "spam_probability": 0.97,
        "action": "TAG",
        "model_version": "v1",
        "verdict_id": "abc",
        "groups": [{"recipients": ["x" * 500] * 1000}],
    }
    store.add(make(), "spam", "alice", verdict)
    (row,) = store.history(hashlib.sha256(make()).hexdigest())
    kept = {"spam_probability": 0.97, "action": "TAG", "model_version": "v1", "verdict_id": "abc"}
    assert row["verdict"] == kept
    assert store.stored_bytes < len(make()) + 400


def test_one_reporter_cannot_fill_the_store(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db", max_store_bytes=10**6, max_reporter_bytes=5000)
    msgs = [make({"Subject": f"q{i}"}, body="q" * 2000) for i in range(4)]
    store.add(msgs[0], "spam", "mallory")
    store.add(msgs[1], "spam", "mallory")
    with pytest.raises(StoreFull, match="max_reporter_bytes"):
        store.add(msgs[2], "spam", "mallory")
    store.add(msgs[2], "spam", "bob")  # others still can
    store.add(msgs[3], "spam", "admin-socket", role="admin")  # the admin has no quota
    store.add(msgs[2], "ham", "mallory")  # a report on a message already stored costs no quota


def test_store_files_are_private(tmp_path: Path) -> None:
    import stat

    store = FeedbackStore(tmp_path / "fb.db")
    store.add(make(), "spam", "alice")
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_anonymous_reports_share_one_bucket(tmp_path: Path) -> None:
    running = _start(tmp_path, {"reports_per_minute": 100, "anonymous_reports_per_minute": 3})
    try:
        with SpamGateClient(f"127.0.0.1:{running.port}", timeout=10) as anon:
            for i in range(3):
                anon.stub.ReportFeedback(pb.FeedbackRequest(message=make({"Subject": f"a{i}"}), label=SPAM))
            with pytest.raises(grpc.RpcError) as e:
                anon.stub.ReportFeedback(pb.FeedbackRequest(message=make({"Subject": "a9"}), label=SPAM))
            assert "anonymous_reports_per_minute" in (e.value.details() or "")
    finally:
        running.stop(0).wait()


def test_audit_log_refuses_a_planted_symlink(tmp_path: Path) -> None:
    from spamgate.service.api.audit import AuditLog

    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    log = tmp_path / "audit.jsonl"
    log.symlink_to(victim)
    AuditLog(log).record({"role": "admin"}, "ReloadPolicy", {}, "OK")
    assert victim.read_text() == "keep\n"  # O_NOFOLLOW: the append went nowhere, logged as an error
