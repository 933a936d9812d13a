"""Hostile input at the service boundary: bounded memory, capped fields and log lines, stream quotas."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spamgate.service.api.client import SpamGateClient
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.server import RunningServer, start_server
from spamgate.service.api.streams import StreamGuard, StreamLimits, peer_host
from spamgate.service.lifecycle.feedback_store import RecentMessages
from spamgate.service.runtime.config import ConfigError, load_config, with_server
from spamgate.service.runtime.logs import MAX_FIELD_CHARS, JsonFormatter, TextFormatter
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.request_fields import FIELD_LIMITS, MAX_RECIPIENTS
from spamgate.service.scoring.verdict import Request
from tests.mail import make


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


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:51444", "127.0.0.1"),
        ("ipv6:[::1]:51444", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("unix:/run/spamgate.sock", "unix:/run/spamgate.sock"),
        ("unix:", "unix:"),
    ],
)
def test_peer_host_strips_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


@contextlib.contextmanager
def _server(**server: object) -> Iterator[tuple[RunningServer, SpamGateClient]]:
    cfg = with_server(load_config(None, {"metrics": {"port": 0}}), port=0, **server)
    holder = ModelHolder()
    running = start_server(cfg, holder)
    holder.load(cfg.model_path)
    try:
        with SpamGateClient(f"127.0.0.1:{running.port}", timeout=5) as c:
            yield running, c
    finally:
        running.stop(0).wait()


class _Stream:
    """A ClassifyStream whose requests the test sends one by one (it idles in between)."""

    def __init__(self, client: SpamGateClient) -> None:
        self.q: queue.Queue[pb.ClassifyRequest | None] = queue.Queue()
        self.call = client.stub.ClassifyStream(self._requests(), timeout=60)
        self.done = threading.Event()
        self.call.add_done_callback(lambda *_: self.done.set())

    def _requests(self) -> Iterator[pb.ClassifyRequest]:
        while (item := self.q.get()) is not None:
            yield item

    def ask(self, cid: str) -> pb.ClassifyResponse:
        self.q.put(pb.ClassifyRequest(message=make(), correlation_id=cid))
        return next(self.call)

    def error(self, timeout: float) -> grpc.RpcError:
        assert self.done.wait(timeout), "stream still open"
        with pytest.raises(grpc.RpcError) as e:
            next(self.call)
        return e.value

    def close(self) -> None:
        self.q.put(None)
        self.call.cancel()


def _until(cond: Callable[[], bool], timeout: float = 10, wait: bool = False) -> None:
    """Poll until ``cond``; after ``timeout`` fail, or with ``wait`` just go on."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            assert wait, "condition not reached"
            return
        time.sleep(0.02)


def test_idle_streams_leave_threads_for_classify_and_health() -> None:
    with _server(workers=8, max_streams_per_peer=16) as (running, c):
        health_stub = health_pb2_grpc.HealthStub(c.channel)
        c.classify(make())  # warm
        streams = [_Stream(c) for _ in range(16)]
        try:
            guard = running.streams
            assert guard is not None
            # every stream has reached a handler (admitted or refused), or the pool is full
            _until(lambda: guard.open_count() + sum(s.done.is_set() for s in streams) >= 16, 3, wait=True)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                ok = health_stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                assert ok.status == health_pb2.HealthCheckResponse.SERVING
                assert c.classify(make(), timeout=2).model_version
                times.append(time.perf_counter() - t0)
            assert sorted(times)[2] < 0.1, times
            assert guard.open_count() == 4
            refused = [s.error(1) for s in streams if s.done.is_set()]
            assert len(refused) == 12
            assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert "max_streams = 4" in (refused[0].details() or "")
        finally:
            for s in streams:
                s.close()


def test_streams_over_the_per_peer_quota_are_refused() -> None:
    with _server(max_streams_per_peer=2) as (running, c):
        a, b = _Stream(c), _Stream(c)
        assert a.ask("a").correlation_id == "a" and b.ask("b").correlation_id == "b"
        t0 = time.perf_counter()
        third = _Stream(c).error(5)
        assert third.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams_per_peer = 2" in (third.details() or "")
        assert time.perf_counter() - t0 < 2  # refused at once, not after a wait
        a.close()
        _until(lambda: running.streams is not None and running.streams.open_count() == 1)
        d = _Stream(c)
        assert d.ask("d").correlation_id == "d"  # a freed slot is reusable
        b.close()
        d.close()


def test_idle_stream_is_closed_after_stream_idle_seconds() -> None:
    with _server(stream_idle_seconds=0.5) as (running, c):
        s = _Stream(c)
        assert s.ask("x").correlation_id == "x"
        t0 = time.perf_counter()
        err = s.error(10)
        assert err.code() == grpc.StatusCode.UNAVAILABLE and "stream_idle_seconds" in (err.details() or "")
        assert 0.4 < time.perf_counter() - t0 < 3
        _until(lambda: running.streams is not None and running.streams.open_count() == 0)
        s.close()


def test_busy_stream_is_closed_after_stream_max_seconds() -> None:
    with _server(stream_idle_seconds=30, stream_max_seconds=1.0) as (_running, c):
        s = _Stream(c)
        t0 = time.perf_counter()
        with pytest.raises(grpc.RpcError) as e:
            for i in range(200):
                s.ask(f"m{i}")
                time.sleep(0.05)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "stream_max_seconds" in (e.value.details() or "")
        assert 0.9 < time.perf_counter() - t0 < 5
        s.close()


@pytest.fixture(scope="module")
def fb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, SpamGateClient]]:
    db = tmp_path_factory.mktemp("feedback") / "feedback.db"
    cfg = with_server(load_config(None, {"metrics": {"port": 0}, "feedback": {"db": str(db)}}), port=0)
    holder = ModelHolder()
    running = start_server(cfg, holder)
    holder.load(cfg.model_path)
    with SpamGateClient(f"127.0.0.1:{running.port}", timeout=10) as c:
        yield running, c
    running.stop(0).wait()


def _classify_error(c: SpamGateClient, **fields: object) -> grpc.RpcError:
    env = {k: fields.pop(k) for k in ("client_ip", "helo", "mail_from", "rcpt_to") if k in fields}
    req = pb.ClassifyRequest(message=make(), envelope=pb.Envelope(**env), **fields)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as e:
        c.stub.Classify(req, timeout=10)
    return e.value


@pytest.mark.parametrize(
    ("field", "kwarg"),
    [
        ("correlation_id", "correlation_id"),
        ("policy", "policy"),
        ("envelope.client_ip", "client_ip"),
        ("envelope.helo", "helo"),
        ("envelope.mail_from", "mail_from"),
    ],
)
def test_oversize_request_field_is_invalid_argument(
    fb_server: tuple[RunningServer, SpamGateClient], field: str, kwarg: str
) -> None:
    _, c = fb_server
    limit = FIELD_LIMITS[field]
    err = _classify_error(c, **{kwarg: "x" * (limit + 1)})
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field} is {limit + 1} characters, above the limit of {limit}" == err.details()


def test_fields_at_their_caps_are_accepted(fb_server: tuple[RunningServer, SpamGateClient]) -> None:
    _, c = fb_server
    limit = FIELD_LIMITS
    rcpts = [("r" * (limit["envelope.rcpt_to[]"] - 12)) + f"{i:04d}@example" for i in range(MAX_RECIPIENTS)]
    assert all(len(r) == limit["envelope.rcpt_to[]"] for r in rcpts)
    req = pb.ClassifyRequest(
        message=make(),
        correlation_id="c" * limit["correlation_id"],
        envelope=pb.Envelope(
            client_ip="192.0.2.1",
            helo="h" * limit["envelope.helo"],
            mail_from="m" * limit["envelope.mail_from"],
            rcpt_to=rcpts,
        ),
    )
    r = c.stub.Classify(req, timeout=30)
    assert r.correlation_id == req.correlation_id and r.model_version
    assert r.ByteSize() < 16 * 1024 * 1024 // 8  # the largest allowed request has a modest answer


def test_too_many_or_too_long_recipients_are_invalid_argument(
    fb_server: tuple[RunningServer, SpamGateClient],
) -> None:
    running, c = fb_server
    before = running.engine.metrics.requests.labels("Classify")._value.get()
    err = _classify_error(c, rcpt_to=[f"u{i}@example.net" for i in range(MAX_RECIPIENTS + 1)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"envelope.rcpt_to has {MAX_RECIPIENTS + 1} recipients, above the limit of 1000"
    assert running.engine.metrics.requests.labels("Classify")._value.get() == before  # refused before scoring
    long = "a" * 600 + "@example.net"
    err = _classify_error(c, rcpt_to=["ok@example.net", long])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"envelope.rcpt_to[1] is {len(long)} characters, above the limit of 512"


def test_stream_refuses_oversize_fields_per_message_without_echoing_them(
    fb_server: tuple[RunningServer, SpamGateClient],
) -> None:
    _, c = fb_server
    huge = "z" * 100_000
    out = list(
        c.classify_stream(
            [
                pb.ClassifyRequest(message=make(), correlation_id=huge),
                pb.ClassifyRequest(message=make(), correlation_id="fine"),
            ],
            timeout=30,
        )
    )
    assert out[0].correlation_id == "" and "correlation_id is 100000 characters" in out[0].error
    assert out[1].correlation_id == "fine" and not out[1].error


@pytest.mark.parametrize("field", ["reporter", "verdict_id"])
def test_oversize_feedback_field_is_invalid_argument(
    fb_server: tuple[RunningServer, SpamGateClient], field: str
) -> None:
    running, _ = fb_server
    limit = FIELD_LIMITS[field]
    req = pb.FeedbackRequest(label=pb.FEEDBACK_LABEL_SPAM, **{field: "f" * (limit + 1)})  # type: ignore[arg-type]
    if field == "reporter":
        req.message = make()
    with SpamGateClient(running.admin_target, timeout=10) as c:  # ReportFeedback: refused on TCP by default
        with pytest.raises(grpc.RpcError) as e:
            c.stub.ReportFeedback(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == f"{field} is {limit + 1} characters, above the limit of {limit}"
        req = pb.FeedbackRequest(
            label=pb.FEEDBACK_LABEL_SPAM, message=make({"Subject": "r"}), reporter="r" * 256
        )
        assert c.stub.ReportFeedback(req, timeout=10).message_sha256


def _record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "spamgate.test", "levelname": "INFO", "msg": msg})
    rec.__dict__.update(extra)
    return rec


def test_log_lines_are_capped() -> None:
    huge = "c" * (17 * 1024 * 1024)
    line = JsonFormatter().format(
        _record("verdict " + huge, correlation_id=huge, rcpt=["r" * 50] * 100, bytes=123, p=0.5)
    )
    assert len(line) < 5 * MAX_FIELD_CHARS
    out = json.loads(line)
    assert out["correlation_id"] == "c" * MAX_FIELD_CHARS + f"…[{len(huge) - MAX_FIELD_CHARS} more chars]"
    assert out["msg"].endswith("more chars]") and out["msg"].startswith("verdict ccc")
    assert out["rcpt"].startswith('["rrr') and out["rcpt"].endswith("more chars]")  # a long list, as text
    assert (out["bytes"], out["p"]) == (123, 0.5)  # short values untouched, numbers stay numbers
    short = json.loads(JsonFormatter().format(_record("ok", correlation_id="q1", rcpt=["a@b"])))
    assert (short["msg"], short["correlation_id"], short["rcpt"]) == ("ok", "q1", ["a@b"])
    text = TextFormatter().format(_record(huge))
    assert len(text) < 2 * MAX_FIELD_CHARS and text.endswith("more chars]")


def test_verdict_log_line_with_huge_correlation_id_in_process(caplog: pytest.LogCaptureFixture) -> None:
    from spamgate.service.policy.policy_file import PolicyHolder
    from spamgate.service.scoring.engine import Engine

    holder = ModelHolder()
    holder.load(load_config(None).model_path)
    engine = Engine(holder, PolicyHolder(None), 1 << 20)
    with caplog.at_level(logging.INFO, logger="spamgate.server"):
        engine.classify(Request(message=make(), correlation_id="k" * 2_000_000), "test")
    lines = [JsonFormatter().format(r) for r in caplog.records if r.getMessage() == "verdict"]
    assert lines and all(len(line) < 5 * MAX_FIELD_CHARS for line in lines)


class _FakeContext:
    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def peer(self) -> str:
        return "ipv4:192.0.2.9:4000"

    def cancel(self) -> None:
        self.cancelled.set()


def test_a_stream_busy_with_a_slow_message_is_not_idle() -> None:
    guard = StreamGuard(StreamLimits(idle_seconds=0.3, max_seconds=60, per_peer=2, max_streams=4))
    busy, idle = _FakeContext(), _FakeContext()
    tb, _ = guard.admit(busy)
    ti, _ = guard.admit(idle)
    try:
        guard.touch(tb, busy=True)  # a request arrived; scoring it takes longer than the idle timeout
        assert idle.cancelled.wait(3)
        assert not busy.cancelled.wait(0.6)
        guard.touch(tb, busy=False)  # answered: now it idles
        assert busy.cancelled.wait(3)
    finally:
        guard.release(tb)
        guard.release(ti)
        guard.stop()


def test_message_bytes_in_progress_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import spamgate.service.scoring.engine as engine_mod
    from spamgate.service.policy.policy_file import PolicyHolder
    from spamgate.service.scoring.verdict import ErrorKind, RequestError

    holder = ModelHolder()
    holder.load(load_config(None).model_path)
    engine = engine_mod.Engine(holder, PolicyHolder(None), 1 << 30, max_inflight_bytes=250_000)
    entered, release = threading.Event(), threading.Event()
    real = engine_mod.build_verdict

    def held(*args: object, **kwargs: object) -> object:
        entered.set()
        release.wait(10)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_mod, "build_verdict", held)
    big = make(body="x" * 200_000)
    first = threading.Thread(target=engine.classify, args=(Request(message=big), "test"))
    first.start()
    assert entered.wait(10)
    with pytest.raises(RequestError) as err:  # 200 KB held + 200 KB more > 250 KB
        engine.classify(Request(message=big), "test")
    assert err.value.kind == ErrorKind.RESOURCE_EXHAUSTED and "max_inflight_bytes" in err.value.message
    release.set()
    first.join(10)
    monkeypatch.setattr(engine_mod, "build_verdict", real)
    assert engine.classify(Request(message=big), "test").scanned  # freed: one call alone always proceeds
    assert engine._inflight == 0
