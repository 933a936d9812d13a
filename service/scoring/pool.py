"""Scoring in worker processes that can be killed: the per-message CPU budget.

Why processes: a message is written by the adversary, and scoring it is pure
Python holding the GIL. Before this module one crafted message (100 KB of
``<a`` in an HTML body) took 13–19 s on the server and every other request,
``Health/Check`` included, waited as long; the client's deadline did not stop
it, since nothing can interrupt a thread stuck inside one ``re`` call. The
parsers are linear now (``tests/test_pathological.py``), but the budget must
also hold against the input nobody has thought of yet, so scoring runs in a
small pool of worker processes and a worker that spends more than
``cpu_budget_ms`` of CPU on one message is killed (SIGKILL) and replaced. The
caller gets ``ScoringAborted`` and the policy decides (reason ``CPU_BUDGET``,
default TAG); other requests keep their own workers and never wait for it.

How the budget is measured: the worker reports its own CPU time
(``time.process_time``) after each job, and while a job runs the parent reads
the worker's CPU time from ``/proc/PID/stat``; the difference is what this
message has cost. CPU, not wall time, so a message is not blamed for a busy
machine; a wall-clock cap (``WALL_FACTOR`` × budget + 1 s) still bounds a
worker that is starved or stuck off-CPU, and a message that has used the
budget's ``HEAVY_SHARE`` is cut off ``GRACE_SECONDS`` after the budget in
wall time (no ordinary message comes near it). Where ``/proc`` is missing, wall
time stands in for CPU time.

The client's deadline is honoured during scoring, not only before: the caller
stops waiting at the deadline, and the worker is handed to a reaper thread
that lets it finish within its budget (then reuses it) or kills it, so a
client with a 1 ms deadline cannot make the pool respawn workers.

Workers are forked from multiprocessing's fork server, which has the scoring
modules imported already: a replacement costs a fork and a model load
(~tens of ms), not a fresh interpreter importing numpy and scipy (~0.5 s),
so killing workers is cheap enough to be the normal answer to a bad message.
The server process itself never forks (gRPC's threads make fork unsafe).

What crosses the pipe is data only: the message bytes go one way and a JSON
object comes back (never pickle, so a worker that some input managed to
subvert cannot run code in the server through its answer). Only the bytes
the parser will read (``ParseLimits.max_bytes`` + 1) are sent: a 25 MB
message costs the pipe no more than a 512 KB one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from spamgate.model.errors import ErrorKind, ServiceError
from spamgate.model.scoring import Reason, Score, Scorer

log = logging.getLogger("spamgate.scoring")

# A worker may use the CPU budget within this many times the budget in wall time (plus 1 s) before
# it is treated as stuck: on a machine with more busy processes than cores a worker gets a fraction
# of a core, and a normal message must not be blamed for that.
WALL_FACTOR = 4.0
# ... except for a message that has already used HEAVY_SHARE of the budget in CPU: it is cut off
# once GRACE_SECONDS of wall time past the budget have gone by. Ordinary mail costs a few ms (the
# slowest of 3,000 S2 test messages 15 ms; BENCHMARKS.md, bench/budget.py), and the heaviest
# legitimate message the overload bench could build within the parse limits ~35 ms, so none comes
# near a fifth of a 500 ms budget, however busy the machine; a message that has, and still runs,
# is the attack the budget is for. Without this rule the spinning test stage got its CPU_BUDGET
# verdict after 0.74-1.4 s on a 2-core VM at load average 3-10 (the test asks for budget + 200 ms);
# with half the budget as the share, two CPU hogs beside the test still pushed it to 0.94-1.18 s.
HEAVY_SHARE = 0.2
GRACE_SECONDS = 0.15
# How long a caller waits for a free worker (or less, within its own deadline). Ordinary mail
# holds a worker for about a millisecond, so a wait this long means every worker is busy with
# messages that cost hundreds of ms: the pool is under attack or overloaded, and a quick
# RESOURCE_EXHAUSTED (the MTA retries later) beats holding the connection. The attack review
# measured ordinary mail waiting 4.9 s behind four over-budget messages with a 30 s wait.
DEFAULT_QUEUE_SECONDS = 2.0
# Scheduling priority of scoring workers relative to the server process (see worker_main).
WORKER_NICE = 2
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ScoringAborted(ServiceError):
    """A message could not be scored within the limits; ``reason`` names why (``CPU_BUDGET``, …).

    Never a status on the wire: the verdict still comes, the policy decides it (``over_budget_action``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ScoringBusy(ServiceError):
    """No worker became free in time (the caller's deadline, or ``DEFAULT_QUEUE_SECONDS``)."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class DeadlinePassed(ServiceError):
    """The caller's deadline passed while its message was being scored."""

    kind = ErrorKind.DEADLINE_EXCEEDED


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to build the same ``Scorer`` as the server's: plain data.

    The server has already verified the artifact (signature, file hashes);
    the worker loads the same folder, which ``load_artifact`` checks against
    the manifest's hashes again, and refuses it unless its manifest is the one
    the server verified (``manifest_sha256``; the manifest holds every file's
    hash). The version alone was not enough: a folder rewritten after the
    server's check, version unchanged, was what the workers scored with, with
    no signature checked (tests/test_artifact_adversarial.py).
    """

    path: str
    version: str
    limits: dict[str, int]
    manifest_sha256: str = ""

    @classmethod
    def of(cls, scorer: Scorer) -> ModelRef:
        art = scorer.artifact
        if art.path is None:
            raise ValueError("the model has no folder on disk; score in-process instead")
        return cls(str(art.path), art.version, art.features.limits.as_dict(), art.manifest_sha256)


def _load_scorer(ref: dict[str, Any]) -> Scorer:
    from spamgate.model.artifact import load_artifact
    from spamgate.model.limits import ParseLimits

    artifact = load_artifact(Path(ref["path"]))
    if artifact.version != ref["version"]:
        raise RuntimeError(f"model at {ref['path']} is {artifact.version}, expected {ref['version']}")
    if ref.get("manifest_sha256") and artifact.manifest_sha256 != ref["manifest_sha256"]:
        raise RuntimeError(
            f"model at {ref['path']} changed since the server verified it "
            f"(manifest sha256 {artifact.manifest_sha256}, verified {ref['manifest_sha256']}); refused"
        )
    limits = ParseLimits(**ref["limits"])
    if limits != artifact.features.limits:
        artifact = replace(artifact, features=replace(artifact.features, limits=limits))
    return Scorer(artifact)


def _score_dict(score: Score) -> dict[str, Any]:
    return {
        "p": score.probability,
        "margin": score.margin,
        "reasons": [[r.name, r.kind, r.contribution] for r in score.reasons],
        "cut": list(score.cut),
        "version": score.model_version,
        "unfamiliar": score.unfamiliar,
        "unseen": score.unseen_share,
        "evidence": score.content_evidence,
        "thin": score.thin,
        "headers": score.has_header_block,
    }


def _score_from(d: dict[str, Any]) -> Score:
    return Score(
        probability=float(d["p"]),
        margin=float(d["margin"]),
        reasons=tuple(Reason(str(n), str(k), float(c)) for n, k, c in d["reasons"]),
        cut=tuple(str(c) for c in d["cut"]),
        model_version=str(d["version"]),
        unfamiliar=str(d.get("unfamiliar", "")),
        unseen_share=float(d.get("unseen", 0.0)),
        content_evidence=int(d.get("evidence", -1)),
        thin=bool(d.get("thin", False)),
        has_header_block=bool(d.get("headers", True)),
    )


def worker_main(conn: Connection, init: Callable[[], None] | None) -> None:
    """A worker's loop: (header, message) in, one JSON answer out, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole group; the server decides
    # Below the server process in the CPU queue: when every core is scoring, the server's own threads
    # (refusing calls over max_concurrent_rpcs, Health, reading requests) still run at once. In
    # bench/overload.py, with scoring at the same priority, refused calls waited p99 40-72 ms over
    # four runs on this 2-core VM; at nice 5, 15.9 ms; nice 10 in one run 29 ms. Nice 2 (two thirds
    # of the server's CFS weight) rather than more: beside two CPU hogs a nice-5 worker got 12% of
    # a core, and even a spinning message took 0.95 s to reach its CPU_BUDGET verdict (the test
    # asks for budget + 200 ms). The budget counts CPU time, so priority never makes a message
    # look dearer.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    if init is not None:
        init()
    scorer: Scorer | None = None
    loaded_key = b""
    try:
        conn.send_bytes(json.dumps({"ready": True, "cpu": time.process_time()}).encode())
    except OSError:
        return  # the server stopped while this worker started: nothing to serve
    while True:
        try:
            job = conn.recv_bytes()
        except (EOFError, OSError):
            return
        out: dict[str, Any]
        try:
            # One frame per job (one pipe write): top_k, a line of JSON naming the model, the message.
            first = job.index(b"\n")
            second = job.index(b"\n", first + 1)
            top_k, key, raw = int(job[:first]), job[first + 1 : second], job[second + 1 :]
            if scorer is None or key != loaded_key:
                scorer, loaded_key = None, b""
                scorer = _load_scorer(json.loads(key))
                loaded_key = key
                # Loading is not this message's cost: tell the parent to restart its CPU count.
                conn.send_bytes(json.dumps({"loaded": True, "cpu": time.process_time()}).encode())
            out = {"ok": True, **_score_dict(scorer.score(raw, top_k=top_k))}
        except Exception as exc:  # a best-effort answer for the parent, which decides
            out = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        out["cpu"] = time.process_time()
        try:
            conn.send_bytes(json.dumps(out).encode())
        except OSError:
            return  # the server is gone (or gave up on this worker and closed the pipe)


def _proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, from ``/proc`` (None where unavailable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)
    except (IndexError, ValueError):
        return None


class _Worker:
    def __init__(self, proc: Any, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.cpu_mark = 0.0  # the worker's CPU seconds when its current job began

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def cpu_used(self, wall_used: float) -> float:
        now = _proc_cpu_seconds(self.pid)
        return wall_used if now is None else max(0.0, now - self.cpu_mark)

    def kill(self, wait: bool = True) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.kill()
        self.conn.close()
        if wait:
            self.reap()

    def reap(self) -> None:
        """Wait for the killed process (a zombie until then); not on a caller's thread."""
        self.proc.join(2.0)


class ScoringPool:
    """``processes`` scoring workers; each message gets ``cpu_budget_ms`` of one worker's CPU.

    ``init`` (a module-level function, run in each worker before it serves)
    is for tests: it lets a test make one stage spin and watch the budget.
    """

    def __init__(
        self,
        processes: int,
        cpu_budget_ms: int,
        init: Callable[[], None] | None = None,
        queue_seconds: float = DEFAULT_QUEUE_SECONDS,
        max_waiting: int = 6,
        max_callers: int = 0,
        threads_held: Callable[[], int] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        if cpu_budget_ms < 1:
            raise ValueError(f"cpu_budget_ms must be >= 1, got {cpu_budget_ms}")
        self.processes = processes
        self.budget = cpu_budget_ms / 1000.0
        self.queue_seconds = queue_seconds
        # Callers allowed to wait for a worker at once; more are refused at once. Each waiting
        # caller holds one of the server's RPC threads, so the server passes workers - 2: two
        # threads always stay free for Health and for refusing (with 16 waiting callers on 8
        # threads, Health/Check took 9.5 s in the attack review).
        self.max_waiting = max_waiting
        self._waiting = 0
        # Callers in the pool at once, scoring or waiting (0: no limit). Each holds an RPC thread
        # too, and the wait limit alone did not count the callers holding a worker: with 2 workers
        # and 8 threads, 2 scoring + 6 waiting took every thread, and with as many workers as
        # threads (8 cores) no caller even waited. One caller flooding over-budget messages made
        # Health/Check take p50 1.2 s, max 3.4 s (tests/test_server_adversarial.py).
        self.max_callers = max_callers
        self._callers = 0
        # RPC threads held outside the pool that count against ``max_callers`` (the server's open
        # streams waiting for their next request): a client's 2 idle streams (its per-peer quota)
        # plus callers up to the cap again took every thread (Health p90 2.05 s, scratch probe).
        self.threads_held = threads_held
        self._init = init
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["spamgate.model.scoring", "spamgate.service.scoring.pool"])
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._live: set[_Worker] = set()
        self._closed = False
        self.killed = 0  # workers killed over budget (for metrics and tests)
        self.model_loads = 0  # models loaded by workers (each worker once per model, when warmed)
        self._headers: dict[tuple[int, int], tuple[Scorer, bytes]] = {}
        self._warm_with: Scorer | None = None  # the model every new worker loads before it serves
        # Started off the caller's thread (forking from the fork server and importing there takes
        # ~1 s on this VM): the server binds and answers Health at once, and a request that comes
        # before the first worker is up waits for it within its deadline.
        self._ready = threading.Event()
        threading.Thread(target=self._start_all, name="spamgate-pool-start", daemon=True).start()

    def _start_all(self) -> None:
        for _ in range(self.processes):
            if self._closed:
                break
            try:
                self._idle.put(self._start())
            except Exception:
                log.exception("could not start a scoring worker")
                self._replace_later()
        self._ready.set()

    def warm(self, scorer: Scorer, timeout: float = 120.0) -> None:
        """Have every worker load ``scorer``'s model now, not on its first message.

        Without it the first message each worker scored after a start paid the
        model load: 3-5 s for the first Classify after a restart on a busy
        2-core VM (RELIABILITY.md, soak), which a milter with a 5 s timeout
        would have turned into a tempfail. The server reports SERVING only
        after this; workers started later (replacing a killed one) load the
        same model before they join the pool.
        """
        self._warm_with = scorer
        self.wait_ready(timeout)
        for _ in range(self.processes):
            try:
                worker = self._idle.get(timeout=timeout)
            except queue.Empty:
                log.warning("a scoring worker was not free to load the model; it will on first use")
                return
            self._prime(worker, scorer)

    def _prime(self, worker: _Worker, scorer: Scorer) -> None:
        """Score an empty message on ``worker`` (loading the model); it rejoins the idle queue."""
        try:
            worker.conn.send_bytes(self._header(scorer, 0) + b"\n")
            self._await(worker, None, time.monotonic())
        except (OSError, ScoringAborted, DeadlinePassed):
            log.warning("a scoring worker failed to load the model; replaced")

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every first worker was started (or failed to); True if it happened in time."""
        return self._ready.wait(timeout)

    # -- lifecycle ---------------------------------------------------------------------------

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=worker_main, args=(child, self._init), name="spamgate-scorer", daemon=True
        )
        proc.start()
        child.close()
        worker = _Worker(proc, parent)
        try:
            if not parent.poll(60.0):
                raise RuntimeError("did not start within 60 s")
            worker.cpu_mark = float(json.loads(parent.recv_bytes())["cpu"])
        except (EOFError, OSError, RuntimeError, ValueError, KeyError) as exc:
            worker.kill()
            raise RuntimeError(f"a scoring worker failed to start ({exc or type(exc).__name__})") from None
        with self._lock:
            self._live.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and start its successor off the caller's thread (which also reaps it)."""
        with self._lock:
            self._live.discard(worker)
        worker.kill(wait=False)
        self._replace_later(worker)

    def _replace_later(self, dead: _Worker | None = None) -> None:
        def respawn() -> None:
            if dead is not None:
                dead.reap()
            if self._closed:
                return
            try:
                new = self._start()
            except Exception:
                if self._closed:
                    return  # the pool was closed while this worker started
                log.exception("could not start a scoring worker; retrying in 1 s")
                time.sleep(1.0)
                threading.Thread(target=respawn, name="spamgate-respawn", daemon=True).start()
                return
            if self._closed:
                new.kill()
            elif self._warm_with is not None:
                self._prime(new, self._warm_with)  # joins the idle queue once it has the model
            else:
                self._idle.put(new)

        threading.Thread(target=respawn, name="spamgate-respawn", daemon=True).start()

    def close(self) -> None:
        """Stop every worker (a worker scoring now is killed)."""
        self._closed = True
        with self._lock:
            workers = list(self._live)
            self._live.clear()
        for w in workers:
            w.kill()

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scoring -----------------------------------------------------------------------------

    def score(self, scorer: Scorer, raw: bytes, top_k: int, time_remaining: float | None = None) -> Score:
        """``scorer.score(raw, top_k)`` in a worker, within the budget and the caller's deadline.

        Raises ``ScoringAborted`` (over budget, or the worker died or failed),
        ``DeadlinePassed`` and ``ScoringBusy``.
        """
        if self._closed:
            raise ScoringBusy("the scoring pool is closed")
        held = self.threads_held() if self.max_callers and self.threads_held is not None else 0
        with self._lock:
            # One caller always gets in: open streams alone never refuse every Classify.
            if self.max_callers and self._callers and self._callers + held >= self.max_callers:
                raise ScoringBusy(
                    f"{self._callers} requests are being scored or wait for a scoring worker already"
                    + (f" and {held} open streams hold server threads" if held else "")
                )
            self._callers += 1
        try:
            return self._score(scorer, raw, top_k, time_remaining)
        finally:
            with self._lock:
                self._callers -= 1

    def _score(self, scorer: Scorer, raw: bytes, top_k: int, time_remaining: float | None) -> Score:
        start = time.monotonic()
        deadline = start + time_remaining if time_remaining is not None else None
        wait = self.queue_seconds if deadline is None else max(0.0, min(self.queue_seconds, deadline - start))
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                if self._waiting >= self.max_waiting:
                    raise ScoringBusy(
                        f"every scoring worker is busy and {self._waiting} requests wait already"
                    ) from None
                self._waiting += 1
            try:
                worker = self._idle.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlinePassed("deadline passed while waiting for a scoring worker") from None
                raise ScoringBusy(f"no scoring worker free within {wait:g} s") from None
            finally:
                with self._lock:
                    self._waiting -= 1
        # The parser reads at most max_bytes; one more byte tells it the message was longer.
        body = raw[: scorer.artifact.features.limits.max_bytes + 1]
        try:
            worker.conn.send_bytes(self._header(scorer, top_k) + body)
        except OSError:
            self._replace(worker)
            raise ScoringAborted("SCORER_FAILED", "the scoring worker was gone") from None
        return self._await(worker, deadline, time.monotonic())

    def _header(self, scorer: Scorer, top_k: int) -> bytes:
        """The job header for a model and ``top_k``, built once per pair (it is the same every time)."""
        key = (id(scorer), top_k)
        cached = self._headers.get(key)
        if cached is None or cached[0] is not scorer:
            ref = ModelRef.of(scorer)
            model = json.dumps(
                {
                    "path": ref.path,
                    "version": ref.version,
                    "limits": ref.limits,
                    "manifest_sha256": ref.manifest_sha256,
                }
            )
            cached = (scorer, f"{int(top_k)}\n{model}\n".encode())
            if len(self._headers) > 64:
                self._headers.clear()
            self._headers[key] = cached
        return cached[1]

    def _await(self, worker: _Worker, deadline: float | None, begun: float) -> Score:
        wall_cap = begun + WALL_FACTOR * self.budget + 1.0
        left = self.budget
        while True:
            now = time.monotonic()
            until = min(wall_cap, deadline) if deadline is not None else wall_cap
            try:
                ready = worker.conn.poll(max(0.0, min(left, until - now)))
            except OSError:
                ready = True  # a closed pipe reads as EOF below
            if ready:
                try:
                    answer = json.loads(worker.conn.recv_bytes())
                except (EOFError, OSError, ValueError):
                    self._replace(worker)
                    raise ScoringAborted("SCORER_FAILED", "the scoring worker died") from None
                if answer.get("loaded"):
                    worker.cpu_mark = float(answer["cpu"])  # the model load is not the message's cost
                    self.model_loads += 1
                    begun = time.monotonic()
                    wall_cap = begun + WALL_FACTOR * self.budget + 1.0
                    left = self.budget
                    continue
                worker.cpu_mark = float(answer["cpu"])
                self._idle.put(worker)
                if not answer.get("ok"):
                    raise ScoringAborted("SCORER_FAILED", str(answer.get("error", "")))
                return _score_from(answer)
            now = time.monotonic()
            used = worker.cpu_used(now - begun)
            heavy = used >= HEAVY_SHARE * self.budget
            past_grace = now >= begun + self.budget + GRACE_SECONDS
            if used >= self.budget or now >= wall_cap or (heavy and past_grace):
                self._replace(worker)
                self.killed += 1
                raise ScoringAborted(
                    "CPU_BUDGET",
                    f"scoring used {used * 1000:.0f} ms of CPU in {(now - begun) * 1000:.0f} ms wall;"
                    f" the budget is {self.budget * 1000:.0f} ms of CPU",
                )
            if deadline is not None and now >= deadline:
                self._reap_later(worker, begun)
                raise DeadlinePassed("deadline passed during scoring")
            left = max(0.005, self.budget - used)
            if not past_grace:  # look again when the grace ends: the message may be heavy by then
                left = max(0.005, min(left, begun + self.budget + GRACE_SECONDS - now))

    def _reap_later(self, worker: _Worker, begun: float) -> None:
        """A worker whose caller gave up: reuse it once it answers within budget, else kill it."""

        def reap() -> None:
            with contextlib.suppress(ScoringAborted, DeadlinePassed):
                self._await(worker, None, begun)

        threading.Thread(target=reap, name="spamgate-reaper", daemon=True).start()
