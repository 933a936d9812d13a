"""Shared pieces of the reliability benchmarks: a steady load against a real server, and /proc figures.

Used by ``bench/soak.py`` and ``bench/reload_under_load.py``. The load is
open-loop: call ``i`` is due at ``start + i / rate`` whatever happened to
earlier calls, taken by whichever of a few client threads is free, so a slow
answer shows up as latency (and as lag behind the schedule), not as a
quietly lower rate.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from spamgate.service.api.client import SpamGateClient, envelope
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from tests.mail import generated_corpus, html, make, multipart

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def pathological_messages() -> dict[str, bytes]:
    """The inputs that once stalled the service (issue 13), and a few like them."""
    return {
        "html_100k_lt_a": html("<html><body>" + "<a" * 50_000 + "</body></html>"),
        "to_60k_no_at": make({"To": "x" * 60_000}),
        "to_from_cc_long": make(
            {"To": "y" * 60_000, "From": "z" * 20_000},
            extra=[("Cc", ", ".join("r" * 30 for _ in range(2000)))],
        ),
        "mime_300_parts": multipart([("text/plain; charset=utf-8", "", f"part {i}\n") for i in range(300)]),
        "encoded_word_storm": make({"Subject": " ".join(["=?utf-8?q?=41=42?="] * 8000)}),
        "long_line_200k": make(body="x" * 200_000 + "\n"),
    }


def message_mix(seed: int = 0, pathological_every: int = 50) -> Callable[[int], tuple[str, bytes]]:
    """``kind, raw`` of call ``i``: generated ham/spam, HTML, plain, and every Nth a pathological one."""
    corpus = [raw for _, raw in generated_corpus(200, seed=seed)]
    plain = [
        make({"Subject": f"Weekly sync {i}", "Message-ID": f"<plain{i}@example.org>"}) for i in range(50)
    ]
    htmls = [
        html(
            f"<html><body><p>Offer {i}</p><a href='http://deals{i}.example.biz/x'>click</a></body></html>",
            {"Message-ID": f"<html{i}@bulk.example.biz>"},
        )
        for i in range(50)
    ]
    bad = list(pathological_messages().items())
    rng = random.Random(seed)

    def pick(i: int) -> tuple[str, bytes]:
        if pathological_every and i % pathological_every == pathological_every - 1:
            return bad[(i // pathological_every) % len(bad)]
        r = rng.random()  # the order of draws differs between threads; the mix does not
        if r < 0.6:
            return "generated", rng.choice(corpus)
        if r < 0.8:
            return "plain", rng.choice(plain)
        return "html", rng.choice(htmls)

    return pick


# ---------------------------------------------------------------- /proc


def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()  # fields from 3 (state) on


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant (scoring workers, the fork server, …)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                children.setdefault(int(st[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _pss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class TreeSample:
    """Memory and CPU of a process tree at one moment."""

    processes: int
    rss_mb: float  # sum of RSS (pages shared between forked workers counted in each)
    pss_mb: float | None  # sum of PSS (shared pages split between sharers): the honest total
    cpu_seconds: float  # user + system of live processes + of their reaped children


def sample_tree(root: int) -> TreeSample:
    rss = 0
    pss: int | None = 0
    cpu = 0.0
    pids = process_tree(root)
    for pid in pids:
        st = _stat(pid)
        if st is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17; rss (pages) is field 24.
        cpu += sum(int(x) for x in st[11:15]) / _CLK_TCK
        rss += int(st[21]) * _PAGE
        p = _pss_kib(pid)
        pss = None if p is None or pss is None else pss + p * 1024
    return TreeSample(len(pids), rss / 2**20, None if pss is None else pss / 2**20, cpu)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------- steady load


@dataclass
class LoadStats:
    """What a steady load saw, call by call (latencies in seconds, with when they ended)."""

    calls: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    limit_reasons: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (end time, seconds)
    slowest: dict[str, float] = field(default_factory=dict)  # per kind
    feedback_calls: int = 0
    feedback_failed: int = 0
    model_versions: Counter[str] = field(default_factory=Counter)
    policy_versions: Counter[str] = field(default_factory=Counter)
    max_lag: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
        lat = [s for t, s in self.latencies if since <= t <= until]
        return {
            "calls": len(lat),
            "p50_ms": round(percentile(lat, 50) * 1e3, 2),
            "p99_ms": round(percentile(lat, 99) * 1e3, 2),
            "max_ms": round(max(lat, default=0.0) * 1e3, 2),
        }


class SteadyLoad:
    """Classify at ``rate`` calls/s from ``threads`` clients; every ``feedback_every``th call also
    reports the verdict by ``verdict_id`` (needs ``[feedback] db``)."""

    def __init__(
        self,
        target: str,
        rate: float,
        threads: int = 6,
        seed: int = 0,
        pathological_every: int = 50,
        feedback_every: int = 25,
        timeout: float = 10.0,
    ) -> None:
        self.target = target
        self.rate = rate
        self.n_threads = threads
        self.pick = message_mix(seed, pathological_every)
        self.feedback_every = feedback_every
        self.timeout = timeout
        self.stats = LoadStats()
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.start_time = 0.0

    def start(self) -> None:
        self.start_time = time.monotonic()
        for k in range(self.n_threads):
            t = threading.Thread(target=self._run, name=f"load-{k}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _ticket(self) -> tuple[int, float]:
        with self._lock:
            i = self._next
            self._next += 1
        return i, self.start_time + i / self.rate

    def _fail(self, what: str, exc: grpc.RpcError) -> None:
        st = self.stats
        code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
        with st.lock:
            st.errors[f"{what}:{code}"] += 1
            if len(st.error_samples) < 20:
                details = exc.details() if hasattr(exc, "details") else str(exc)
                st.error_samples.append(f"{what}: {code}: {str(details)[:200]}")

    def _run(self) -> None:
        st = self.stats
        with SpamGateClient(self.target, timeout=self.timeout) as client:
            while not self._stop.is_set():
                i, due = self._ticket()
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                lag = max(0.0, time.monotonic() - due)
                kind, raw = self.pick(i)
                env = envelope("192.0.2.7", "mail.example.org", "a@example.org", ["b@example.net"])
                t0 = time.monotonic()
                try:
                    v = client.classify(raw, env, correlation_id=f"soak-{i}")
                except grpc.RpcError as exc:
                    with st.lock:
                        st.calls += 1
                        st.failed += 1
                    self._fail("Classify", exc)
                    continue
                t1 = time.monotonic()
                with st.lock:
                    st.calls += 1
                    st.kinds[kind] += 1
                    st.latencies.append((t1, t1 - t0))
                    st.slowest[kind] = max(st.slowest.get(kind, 0.0), t1 - t0)
                    st.max_lag = max(st.max_lag, lag)
                    st.model_versions[v.model_version] += 1
                    st.policy_versions[v.policy_version] += 1
                    for r in v.reasons:
                        if r.kind == "limit":
                            st.limit_reasons[r.name] += 1
                if self.feedback_every and i % self.feedback_every == 0 and v.verdict_id:
                    label = pb.FEEDBACK_LABEL_SPAM if i % 2 else pb.FEEDBACK_LABEL_HAM
                    try:
                        client.stub.ReportFeedback(
                            pb.FeedbackRequest(verdict_id=v.verdict_id, label=label, reporter="soak"),
                            timeout=self.timeout,
                        )
                        with st.lock:
                            st.feedback_calls += 1
                    except grpc.RpcError as exc:
                        with st.lock:
                            st.feedback_calls += 1
                            st.feedback_failed += 1
                        self._fail("ReportFeedback", exc)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A TOML config file from ``{section: {key: value}}`` (strings, numbers, booleans)."""
    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        for k, v in keys.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, (int, float)):
                lines.append(f"{k} = {v}")
            else:
                lines.append(f'{k} = "{v}"')
        lines.append("")
    path.write_text("\n".join(lines))
    return path
