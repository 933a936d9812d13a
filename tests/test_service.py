"""A real gRPC server on an ephemeral 127.0.0.1 port, checked through real clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.multiprocess import MultiProcessCollector

from spamgate.model.bundled import bundled_model_path
from spamgate.service.api.client import SpamGateClient, envelope, open_channel
from spamgate.service.api.launch import start_serve
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.proto_gen import spamgate_pb2_grpc as pb_grpc
from spamgate.service.api.server import RunningServer, start_server
from spamgate.service.runtime.config import ConfigError, load_config, with_server
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Request
from tests.mail import html, make

REPO = Path(__file__).resolve().parents[1]
SPAMMY = make(
    {"Subject": "CHEAP V1AGRA!!! 90% OFF", "Message-ID": None, "From": "Pharmacy <x@pills.example.biz>"},
    body="Buy cheap viagra cialis online now! No prescription needed. http://pills.example.biz/ CLICK HERE\n",
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    cfg = with_server(load_config(None, {"metrics": {"port": 0}}), port=0, max_message_bytes=200_000)
    holder = ModelHolder()
    running = start_server(cfg, holder)
    holder.load(cfg.model_path)
    yield running
    running.stop(0).wait()


@pytest.fixture()
def client(server: RunningServer) -> Iterator[SpamGateClient]:
    with SpamGateClient(f"127.0.0.1:{server.port}", timeout=10) as c:
        yield c


def test_classify_equals_in_process(server: RunningServer, client: SpamGateClient) -> None:
    for i, raw in enumerate([make(), SPAMMY, html("<p>Hello</p>"), b"\x00\x01garbage\xff" * 50]):
        r = client.classify(
            raw,
            envelope("93.184.216.34", "mail.example.org", "a@example.org", ["b@example.net"]),
            correlation_id=f"q{i}",
        )
        local = server.engine.classify(Request(message=raw, correlation_id=f"q{i}"), "test")
        assert r.correlation_id == f"q{i}"
        assert r.spam_probability == pytest.approx(local.spam_probability, abs=1e-12)
        assert r.action == int(local.action) and r.model_version == local.model_version
        assert [x.name for x in r.reasons] == [x.name for x in local.reasons]
        assert r.scanned


def test_spam_scores_above_ham_and_headers(client: SpamGateClient) -> None:
    """Spam gets a spam action and ham DELIVER, and each verdict's headers, threshold and tag agree.

    The built-in policy rejects SPAMMY (p ~0.9998 against ~0.9989 for REJECT with the bundled
    model), so a TAG verdict is not reached here; tests/test_policy.py's gRPC round trip checks
    one (subject tag and ``tag:`` threshold) with a policy that tags.
    """
    ham, spam = client.classify(make()), client.classify(SPAMMY)
    assert spam.spam_probability > ham.spam_probability
    assert ham.action == pb.ACTION_DELIVER and ham.threshold == "" and ham.subject_tag == ""
    assert spam.action in (pb.ACTION_TAG, pb.ACTION_REROUTE, pb.ACTION_REJECT)  # DELETE is off by default
    for r, flag in ((ham, "NO"), (spam, "YES")):
        action = pb.Action.Name(r.action).removeprefix("ACTION_")
        headers = {h.name: h.value for h in r.add_headers}
        assert headers["X-Spam-Flag"] == flag and headers["X-Spam-Action"] == action, headers
        assert headers["X-Spam-Probability"] == f"{r.spam_probability:.4f}"
        assert headers["X-Spam-Model"] == r.model_version
        assert r.subject_tag == ("[SPAM] " if r.action == pb.ACTION_TAG else "")
    assert spam.threshold.startswith(f"{pb.Action.Name(spam.action).removeprefix('ACTION_').lower()}: at FPR")


def test_stream_keeps_order_and_reports_per_message_errors(
    server: RunningServer, client: SpamGateClient
) -> None:
    msgs = [make(), b"", SPAMMY, b"x" * 300_000, make({"Subject": "again"})]
    reqs = [pb.ClassifyRequest(message=m, correlation_id=f"s{i}") for i, m in enumerate(msgs)]
    out = list(client.classify_stream(reqs, timeout=20))
    assert [r.correlation_id for r in out] == [f"s{i}" for i in range(5)]
    assert "empty" in out[1].error and "200000" in out[3].error
    assert not out[0].error and out[2].spam_probability == pytest.approx(
        server.engine.classify(Request(message=SPAMMY), "t").spam_probability
    )


def test_empty_and_oversize_are_invalid_argument(client: SpamGateClient) -> None:
    with pytest.raises(grpc.RpcError) as e:
        client.classify(b"")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        client.classify(make(body="y" * 300_000))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "200000" in e.value.details()


def test_random_bytes_get_a_verdict(client: SpamGateClient) -> None:
    r = client.classify(os.urandom(5000))
    assert 0.0 <= r.spam_probability <= 1.0 and r.action != pb.ACTION_UNSPECIFIED


def test_unknown_policy_is_invalid(client: SpamGateClient) -> None:
    with pytest.raises(grpc.RpcError) as e:
        client.classify(make(), policy="nope")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_model_info(client: SpamGateClient) -> None:
    info = client.model_info()
    assert info.model_version and info.feature_version.startswith("sg-features")
    assert {"fpr_1%", "fpr_0.1%", "fpr_0.01%"} <= {p.name for p in info.operating_points}
    assert not {"aggressive", "balanced", "lenient"} & {p.name for p in info.operating_points}
    assert info.site_reports == 0 and info.new_site_operating_points
    new_tag = next(p for p in info.new_site_operating_points if p.target_fpr == 0.01)
    own_tag = next(p for p in info.operating_points if p.target_fpr == 0.01)
    assert new_tag.threshold >= own_tag.threshold  # the highest over the left-out sites
    assert info.training_messages > 1000
    # Text with no header block is judged by points measured on the left-out sites' text alone (v1.2).
    text_tag = next(p for p in info.new_site_text_only_operating_points if p.target_fpr == 0.01)
    assert 0.0 < text_tag.threshold <= 1.0 and text_tag.name == "fpr_1%"


def test_reflection_lists_the_service(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(
            iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        )
        names = {s.name for s in resp.list_services_response.service}
    assert "spamgate.v1.SpamGate" in names and "grpc.health.v1.Health" in names


def test_health_goes_serving_after_load() -> None:
    cfg = with_server(load_config(None, {"metrics": {"port": 0}}), port=0)
    holder = ModelHolder()
    running = start_server(cfg, holder)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            req = health_pb2.HealthCheckRequest(service="spamgate.v1.SpamGate")
            assert stub.Check(req).status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as e:
                SpamGateClient(f"127.0.0.1:{running.port}").classify(make())
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            holder.load(bundled_model_path())
            assert stub.Check(req).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(0).wait()


def test_metrics_endpoint() -> None:
    cfg = with_server(load_config(None, {"metrics": {"port": 0}}), port=0)
    holder = ModelHolder()
    holder.load(bundled_model_path())
    running = start_server(cfg, holder)
    # port 0 for metrics means disabled; start the HTTP endpoint on a free port explicitly
    mport = running.engine.metrics.serve_http("127.0.0.1", 0)
    try:
        with SpamGateClient(f"127.0.0.1:{running.port}") as c:
            c.classify(make())
            with pytest.raises(grpc.RpcError):
                c.classify(b"")
        body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        assert 'spamgate_requests_total{method="Classify"} 2.0' in body
        assert (
            "spamgate_verdicts_total" in body and 'spamgate_errors_total{code="INVALID_ARGUMENT"} 1.0' in body
        )
        assert "spamgate_classify_seconds_bucket" in body and "spamgate_message_bytes_bucket" in body
        assert "spamgate_model_info{" in body
        assert 'spamgate_model_loaded{feature_version="sg-features-' in body
    finally:
        running.stop(0).wait()


def test_deadline_is_honoured(client: SpamGateClient) -> None:
    # A 2 MB message cannot be sent and scored in a millisecond; with a tiny message the call
    # sometimes finished inside gRPC's deadline granularity and the test flaked.
    big = make(body="word " * 400_000)
    with pytest.raises(grpc.RpcError) as e:
        client.classify(big, timeout=0.001)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_bad_config_is_rejected_with_named_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[server]\nport = 70000\nwokers = 3\n[model]\npath = "/nonexistent/model"\n[surprise]\n'
        '[policy]\nfile = "/nonexistent/policy.toml"\n'
    )
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    text = str(e.value)
    for expected in (
        "port must be in",
        "unknown key 'wokers'",
        "/nonexistent/model",
        "unknown section [surprise]",
        "/nonexistent/policy.toml",
    ):
        assert expected in text
    r = subprocess.run(
        [sys.executable, "-m", "spamgate.service.cli", "serve", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 78 and "unknown key 'wokers'" in r.stderr  # EX_CONFIG


def _start_serve_process(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    return start_serve()


def test_sigterm_drains_in_flight_call(tmp_path: Path) -> None:
    proc, port = _start_serve_process(tmp_path)
    try:
        import queue

        q: queue.Queue[pb.ClassifyRequest | None] = queue.Queue()

        def requests() -> Iterator[pb.ClassifyRequest]:
            while (item := q.get()) is not None:
                yield item

        with SpamGateClient(f"127.0.0.1:{port}") as c:
            responses = c.classify_stream(requests(), timeout=30)
            q.put(pb.ClassifyRequest(message=make(), correlation_id="before"))
            assert next(responses).correlation_id == "before"
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None, "server exited with a call in flight"
            q.put(pb.ClassifyRequest(message=SPAMMY, correlation_id="during"))
            assert next(responses).correlation_id == "during"
            q.put(None)
            assert list(responses) == []
        assert proc.wait(timeout=20) == 0
        with pytest.raises(grpc.RpcError), SpamGateClient(f"127.0.0.1:{port}", timeout=2) as c2:
            c2.classify(make())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_classify_cli_round_trip(tmp_path: Path) -> None:
    proc, port = _start_serve_process(tmp_path)
    try:
        (tmp_path / "msgs").mkdir()
        (tmp_path / "msgs" / "ham.eml").write_bytes(make())
        (tmp_path / "msgs" / "spam.eml").write_bytes(SPAMMY)
        remote = subprocess.run(
            [
                sys.executable,
                "-m",
                "spamgate.service.cli",
                "classify",
                "--server",
                f"127.0.0.1:{port}",
                "--json",
                str(tmp_path / "msgs"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        local = subprocess.run(
            [sys.executable, "-m", "spamgate.service.cli", "classify", "--json", str(tmp_path / "msgs")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
        import json

        r_lines = [json.loads(x) for x in remote.stdout.splitlines()]
        l_lines = [json.loads(x) for x in local.stdout.splitlines()]
        assert [x["path"] for x in r_lines] == [x["path"] for x in l_lines] and len(r_lines) == 2
        for a, b in zip(r_lines, l_lines, strict=True):
            assert a["spam_probability"] == pytest.approx(b["spam_probability"], abs=1e-6)
            assert a["action"] == b["action"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_overload_is_resource_exhausted() -> None:
    cfg = with_server(load_config(None, {"metrics": {"port": 0}}), port=0, max_concurrent_rpcs=1)
    holder = ModelHolder()
    holder.load(bundled_model_path())
    running = start_server(cfg, holder)
    import queue

    q: queue.Queue[pb.ClassifyRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.ClassifyRequest]:
        while (item := q.get()) is not None:
            yield item

    try:
        with SpamGateClient(f"127.0.0.1:{running.port}") as c:
            held = c.classify_stream(requests(), timeout=20)  # occupies the only slot
            q.put(pb.ClassifyRequest(message=make(), correlation_id="hold"))
            assert next(held).correlation_id == "hold"
            with pytest.raises(grpc.RpcError) as e:
                c.classify(make())
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            q.put(None)
            list(held)
    finally:
        running.stop(0).wait()


def _classify_calls_per_process(metrics_dir: Path) -> dict[str, float]:
    """Classify calls each serving process counted, from its own prometheus-client files.

    In multi-process mode each process writes ``counter_<pid>.db`` in the shared folder;
    merging one file alone gives that process's counts (the parent's /metrics merges them all).
    """
    counts: dict[str, float] = {}
    for f in sorted(metrics_dir.glob("counter_*.db")):
        n = sum(
            s.value
            for metric in MultiProcessCollector.merge([str(f)])
            for s in metric.samples
            if s.name == "spamgate_requests_total" and s.labels.get("method") == "Classify"
        )
        if n:
            counts[f.stem.removeprefix("counter_")] = n
    return counts


def test_worker_processes_share_the_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --processes 2 both workers answer, and every call is answered once.

    The kernel spreads connections, not calls (SO_REUSEPORT hashes the address pair), so each
    call gets a channel of its own, with a local subchannel pool (gRPC otherwise shares one
    connection between channels to the same target). 24 calls all landing on one of two
    workers happens with probability 2**-23. The workers' metrics folder is made with
    ``tempfile.mkdtemp``, here under tmp_path (TMPDIR).
    """
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    proc, port = start_serve(["--processes", "2"])
    calls = 24
    try:
        for i in range(calls):
            with open_channel(f"127.0.0.1:{port}", [("grpc.use_local_subchannel_pool", 1)]) as channel:
                r = pb_grpc.SpamGateStub(channel).Classify(
                    pb.ClassifyRequest(message=make({"Subject": f"n{i}"})), timeout=20
                )
                assert r.model_version
        (metrics_dir,) = tmp_path.glob("spamgate-metrics-*")
        per_worker = _classify_calls_per_process(metrics_dir)
        assert sum(per_worker.values()) == calls and len(per_worker) == 2, per_worker
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
