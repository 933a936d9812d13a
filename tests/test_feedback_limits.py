"""Feedback cannot be flooded, inflated or signed in someone else's name (issue 16)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.client import SpamGateClient
from service.config import ConfigError, load_config, with_server
from service.feedback import FeedbackStore, StoreFull
from service.proto_gen import spamgate_pb2 as pb
from service.registry import ModelHolder
from service.report_rate import ReportRateLimiter, peer_host
from service.server import RunningServer, start_server
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


def test_store_keeps_only_what_the_parser_reads(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db", max_message_bytes=1000)
    raw = make(body="x" * 50_000)
    stored = store.add(raw, "spam", "alice")
    (kept,) = (r.message.raw for r in store.reports())
    assert kept == raw[:1000] and store.stored_bytes == 1000
    import hashlib

    assert stored.sha256 == hashlib.sha256(raw).hexdigest()  # the verdict_id of the whole message


def test_store_is_capped_and_the_cap_survives_reopening(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db", max_store_bytes=3000, max_message_bytes=1000)
    msgs = [make({"Subject": f"m{i}"}, body="y" * 5000) for i in range(4)]
    for m in msgs[:3]:
        store.add(m, "spam", "alice")
    with pytest.raises(StoreFull):
        store.add(msgs[3], "spam", "alice")
    assert store.count() == 3
    store.add(msgs[0], "ham", "admin-socket", role="admin")  # a report on a stored message still counts
    store.close()
    again = FeedbackStore(tmp_path / "fb.db", max_store_bytes=3000, max_message_bytes=1000)
    assert again.stored_bytes == 3000
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
    assert old["role"] is None and old["claim"] == "" and store.stored_bytes == 2


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
        ("anonymous@127.0.0.1", None, "admin@example.net"),
        ("admin-socket", "admin", "someone"),
    ]
    standing = {r.message.source: r.message.label for r in store.reports()}
    assert standing[f"feedback:{first.message_sha256}"] == 1


def test_full_store_refuses_with_resource_exhausted(tmp_path: Path) -> None:
    running = _start(tmp_path, {"max_store_bytes": 2500})  # one ~1.6 KB message fits, two do not
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
