"""The per-message CPU budget: a stage that spins is cut off; other requests never wait for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from spamgate.service.api.client import SpamGateClient
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.server import RunningServer, start_server
from spamgate.service.policy.policy_file import PolicyHolder
from spamgate.service.runtime.config import ConfigError, load_config, with_server
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Request, build_verdict
from tests.mail import make
from tests.scoring_hooks import CRASH_MARKER, SPIN_MARKER, misbehave_on_marker

BUDGET_MS = 500
SPIN = make(extra=[("X-Test-Spin-Stage", "yes")])
CRASH = make(extra=[("X-Test-Crash-Stage", "yes")])
assert SPIN_MARKER in SPIN and CRASH_MARKER in CRASH


def _server(policy: Path | None = None) -> RunningServer:
    cfg = load_config(
        None,
        {"metrics": {"port": 0}, "limits": {"cpu_budget_ms": BUDGET_MS, "scoring_processes": 2}},
    )
    holder = ModelHolder()
    running = start_server(
        with_server(cfg, port=0), holder, policies=PolicyHolder(policy), scoring_init=misbehave_on_marker
    )
    holder.load(cfg.model_path)
    assert running.pool is not None and running.pool.wait_ready(60)
    return running


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = _server()
    yield running
    running.stop(0).wait()


@pytest.fixture()
def client(server: RunningServer) -> Iterator[SpamGateClient]:
    with SpamGateClient(f"127.0.0.1:{server.port}", timeout=20) as c:
        c.classify(make())  # both workers have loaded the model before anything is timed
        c.classify(make())
        yield c


def test_spinning_stage_gets_cpu_budget_verdict_while_others_are_served(client: SpamGateClient) -> None:
    spin_result: dict[str, object] = {}

    def spin() -> None:
        t = time.monotonic()
        spin_result["response"] = client.classify(SPIN)
        spin_result["seconds"] = time.monotonic() - t

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.1)  # the spinner holds a worker now
    t = time.monotonic()
    ordinary = client.classify(make({"Subject": "Lunch on Friday?"}))
    ordinary_s = time.monotonic() - t
    spinner.join(15)
    assert not spinner.is_alive()
    r = spin_result["response"]
    assert isinstance(r, pb.ClassifyResponse)
    assert ordinary_s < 1.0, f"an ordinary message waited {ordinary_s:.2f} s behind a spinning one"
    assert ordinary.scanned and ordinary.action == pb.ACTION_DELIVER
    assert float(spin_result["seconds"]) < BUDGET_MS / 1000 + 0.2  # type: ignore[arg-type]
    assert [x.name for x in r.reasons] == ["CPU_BUDGET"] and r.reasons[0].kind == "limit"
    assert r.action == pb.ACTION_TAG and not r.scanned  # the default policy's over_budget_action
    assert any(c.startswith("cpu_budget:") for c in r.limits_cut)
    assert r.threshold.startswith("CPU_BUDGET")


def test_pool_recovers_after_a_kill(server: RunningServer, client: SpamGateClient) -> None:
    assert server.pool is not None
    before = server.pool.killed
    assert client.classify(SPIN).reasons[0].name == "CPU_BUDGET"
    assert server.pool.killed == before + 1
    for _ in range(6):  # every worker, the replacement included, scores normally
        r = client.classify(make())
        assert r.scanned and r.reasons[0].name != "CPU_BUDGET"
    assert server.engine.metrics.aborted.labels("CPU_BUDGET")._value.get() >= 1


def test_deadline_is_honoured_during_scoring(client: SpamGateClient) -> None:
    t = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        client.classify(SPIN, timeout=0.2)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t < 0.5
    time.sleep(BUDGET_MS / 1000 + 0.3)  # the reaper kills the abandoned worker within its budget
    assert client.classify(make()).scanned


def test_a_worker_that_dies_gives_a_verdict_not_an_error(client: SpamGateClient) -> None:
    r = client.classify(CRASH)
    assert [x.name for x in r.reasons] == ["SCORER_FAILED"] and r.action == pb.ACTION_TAG
    assert client.classify(make()).scanned


def test_policy_decides_over_budget_action(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('over_budget_action = "REROUTE"\n')
    running = _server(policy)
    try:
        with SpamGateClient(f"127.0.0.1:{running.port}", timeout=20) as c:
            r = c.classify(SPIN)
        assert r.action == pb.ACTION_REROUTE and r.reroute_to
    finally:
        running.stop(0).wait()


def test_budget_keys_are_validated() -> None:
    with pytest.raises(ConfigError, match="cpu_budget_ms"):
        load_config(None, {"limits": {"cpu_budget_ms": -1}})
    cfg = load_config(None, {"limits": {"cpu_budget_ms": 0, "max_bytes": 1000}})
    assert cfg.budget.cpu_budget_ms == 0 and cfg.limits == {"max_bytes": 1000}
    assert load_config(None).budget.processes >= 2


def test_scores_from_workers_carry_everything_the_in_process_path_gives(
    server: RunningServer, client: SpamGateClient
) -> None:
    thai = (Path(__file__).resolve().parent / "multilingual" / "ham" / "th" / "01-business.eml").read_bytes()
    engine = server.engine
    for raw in (make(), thai, make(body="x" * 700_000)):
        remote = client.classify(raw)  # scored in a worker process
        direct = build_verdict(Request(message=raw), engine.holder, engine.policies.current(), 1 << 30)
        assert remote.spam_probability == pytest.approx(direct.spam_probability, abs=1e-9)
        assert [r.name for r in remote.reasons] == [r.name for r in direct.reasons]
        assert list(remote.limits_cut) == list(direct.limits_cut)
        assert remote.unfamiliar == direct.unfamiliar
    assert client.classify(thai).unfamiliar


def test_workers_load_the_model_before_the_server_says_serving(server: RunningServer) -> None:
    assert server.pool is not None
    # The fixture loaded the model: every worker loaded it then, before Health said SERVING.
    assert server.pool.model_loads >= server.pool.processes
    loads = server.pool.model_loads
    with SpamGateClient(f"127.0.0.1:{server.port}", timeout=20) as c:
        for _ in range(2 * server.pool.processes):
            c.classify(make())
    assert server.pool.model_loads == loads  # no message paid for a model load


def test_a_saturated_pool_refuses_at_once_instead_of_queueing_everyone() -> None:
    from spamgate.model.bundled import bundled_model_path
    from spamgate.service.scoring.pool import ScoringBusy, ScoringPool

    holder = ModelHolder()
    scorer = holder.load(bundled_model_path())
    with ScoringPool(1, BUDGET_MS, init=misbehave_on_marker, max_waiting=1, queue_seconds=5) as pool:
        pool.warm(scorer)
        results: dict[str, object] = {}

        def call(name: str) -> None:
            try:
                results[name] = pool.score(scorer, SPIN, 5)
            except Exception as exc:
                results[name] = exc

        holding = threading.Thread(target=call, args=("holding",))
        holding.start()
        time.sleep(0.1)  # the only worker spins
        waiting = threading.Thread(target=call, args=("waiting",))
        waiting.start()
        time.sleep(0.1)  # one caller waits: the most allowed
        t = time.monotonic()
        with pytest.raises(ScoringBusy):
            pool.score(scorer, make(), 5)
        assert time.monotonic() - t < 0.1  # refused at once, not after the queue wait
        holding.join(15)
        waiting.join(15)
        assert not holding.is_alive() and not waiting.is_alive()


def test_a_score_crosses_the_worker_pipe_whole() -> None:
    """Every field of a Score survives the pool's dict round trip (a field left out reads as its
    default in the server: has_header_block did, and text alone was judged by whole-message points)."""
    from dataclasses import fields

    from spamgate.model.scoring import Reason, Score
    from spamgate.service.scoring.pool import _score_dict, _score_from

    score = Score(
        0.42, 0.1, (Reason("b:x", "token", 0.1),), ("cut",), "v1", "OUT_OF_DISTRIBUTION", 0.7, 3, True, False
    )
    assert all(
        getattr(score, f.name) != f.default for f in fields(Score) if f.default is not f.default_factory
    )
    assert _score_from(_score_dict(score)) == score
