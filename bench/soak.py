"""Soak: a real server at a steady load for ten minutes; memory, failures, latency, CPU.

    python bench/soak.py [--rate 50] [--seconds 600] [--threads 6] [--pathological-every 100]

Starts ``spamgate serve`` (``service.api.launch.start_serve``: the default
configuration, the bundled model, plus a feedback store in a temporary
folder so that ``ReportFeedback`` by ``verdict_id`` works) and classifies at
``--rate`` messages/s, open-loop (``bench/loadgen.py``), from a few client
threads: generated ham/spam (``tests/mail.generated_corpus``), plain and HTML
messages, and every ``--pathological-every``th call one of the inputs that
once stalled the service (100 KB of ``<a`` in an HTML body, a 60 KB ``To:``
without ``@``, long From/To/Cc, 300 MIME parts, an encoded-word storm, a
200 KB line). Every 25th verdict is also reported as feedback by its id.

Every ``--sample-seconds`` it samples the server's process tree from
``/proc`` (the server and its scoring workers, which run in child processes;
see ``service/scoring/pool.py``): RSS summed over the tree (pages shared
between forked workers counted in each), PSS summed (shared pages split: the
real total), and CPU seconds (user + system, including reaped workers).

Figures: failed calls (any gRPC error, by method and code: must be 0),
latency p50/p99/max overall, per minute and per kind of message, verdicts
with a limit reason (``CPU_BUDGET``: the message cost more than the budget),
memory at start/end/max, server CPU ms per message. Writes
bench/results/soak.json (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, reference_loop_seconds, run_facts
from bench.loadgen import SteadyLoad, sample_tree, write_config
from spamgate.service.api.launch import start_serve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0, help="Classify calls per second")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=6, help="client threads")
    ap.add_argument("--pathological-every", type=int, default=100)
    ap.add_argument("--sample-seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "bench/soak.py", *(argv if argv is not None else sys.argv[1:])])
    ref = reference_loop_seconds()
    load_start = round(os.getloadavg()[0], 2)  # this VM's 2 cores are shared

    with tempfile.TemporaryDirectory(prefix="spamgate-soak-") as tmp:
        cfg = write_config(
            Path(tmp) / "soak.toml",
            # the load's reports go over TCP: allowed explicitly (refused by default, README "Security")
            {"feedback": {"db": str(Path(tmp) / "feedback.db")}, "admin": {"anonymous_feedback": True}},
        )
        proc, port = start_serve(["--config", str(cfg)])
        try:
            # One warm-up call per kind, so "start" is a serving server, not a half-loaded one.
            warm = SteadyLoad(f"127.0.0.1:{port}", rate=100, threads=1, feedback_every=0)
            warm.start()
            time.sleep(1.0)
            warm.stop()
            start = sample_tree(proc.pid)
            load = SteadyLoad(
                f"127.0.0.1:{port}",
                args.rate,
                args.threads,
                args.seed,
                args.pathological_every,
            )
            samples: list[dict[str, Any]] = []
            t0 = time.monotonic()
            load.start()
            peak = start
            while (elapsed := time.monotonic() - t0) < args.seconds:
                time.sleep(min(args.sample_seconds, max(0.0, args.seconds - elapsed)))
                s = sample_tree(proc.pid)
                samples.append(
                    {
                        "t": round(time.monotonic() - t0, 1),
                        "processes": s.processes,
                        "rss_mb": round(s.rss_mb, 1),
                        "pss_mb": None if s.pss_mb is None else round(s.pss_mb, 1),
                        "cpu_s": round(s.cpu_seconds - start.cpu_seconds, 2),
                        "calls": load.stats.calls,
                    }
                )
                if s.rss_mb > peak.rss_mb:
                    peak = s
                if proc.poll() is not None:
                    break
            load.stop()
            wall = time.monotonic() - t0
            end = sample_tree(proc.pid)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            exit_code = proc.wait(timeout=30)

    st = load.stats
    minutes = []
    for m in range(int(args.seconds // 60 + (1 if args.seconds % 60 else 0))):
        lo = load.start_time + 60 * m
        minutes.append({"minute": m + 1, **st.summary(lo, lo + 60)})
    pss = [x["pss_mb"] for x in samples if x["pss_mb"] is not None]
    result: dict[str, Any] = {
        **run_facts(command),
        "reference_loop_seconds": round(ref, 3),
        "load_average_1min_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "rate_target": args.rate,
        "seconds": round(wall, 1),
        "rate_achieved": round(st.calls / wall, 2),
        "classify_calls": st.calls,
        "failed_calls": st.failed + st.feedback_failed,
        "errors": dict(st.errors),
        "error_samples": st.error_samples,
        "feedback_calls": st.feedback_calls,
        "messages_by_kind": dict(st.kinds),
        "limit_verdicts": dict(st.limit_reasons),
        "latency": st.summary(),
        "slowest_ms_by_kind": {k: round(v * 1e3, 1) for k, v in sorted(st.slowest.items())},
        "max_lag_behind_schedule_ms": round(st.max_lag * 1e3, 1),
        "latency_by_minute": minutes,
        "memory": {
            "processes_start_end": [start.processes, end.processes],
            "rss_mb_start": round(start.rss_mb, 1),
            "rss_mb_end": round(end.rss_mb, 1),
            "rss_mb_max": round(peak.rss_mb, 1),
            "pss_mb_start": None if start.pss_mb is None else round(start.pss_mb, 1),
            "pss_mb_end": None if end.pss_mb is None else round(end.pss_mb, 1),
            "pss_mb_max": round(max(pss), 1) if pss else None,
        },
        "server_cpu_seconds": round(end.cpu_seconds - start.cpu_seconds, 1),
        "server_cpu_ms_per_message": round(1e3 * (end.cpu_seconds - start.cpu_seconds) / max(1, st.calls), 2),
        "server_alive_at_end": alive,
        "server_exit_code_after_sigterm": exit_code,
        "samples": samples,
    }
    brief = {k: v for k, v in result.items() if k not in ("samples", "latency_by_minute")}
    print(json.dumps(brief, indent=2))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out.relative_to(REPO)}")
    return 0 if result["failed_calls"] == 0 and alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
