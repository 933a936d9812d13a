"""What the per-message CPU budget costs, and how far real mail is from it.

    python bench/budget.py --data DATA [--split S2] [--messages 3000] [--budget-ms 500]

Scoring moved into worker processes (``service.scoring.pool``) so that a
message over ``[limits] cpu_budget_ms`` can be killed. That adds a pipe
round trip and a JSON answer per message. This benchmark scores the same
messages (the test half of a peers' split) one at a time, as the server
does, two ways:

- in process: ``Scorer.score(raw, top_k=5)`` in this thread (the old path);
- pool: ``ScoringPool.score`` with one worker, so both paths use one core;

alternating chunk by chunk, each chunk's fastest of ``--repeat`` runs (see ``compare``).

For each it reports wall ms per message and **CPU ms per message**, counted
over every process involved (this one plus the worker, from ``/proc``): the
figure that does not depend on what else the machine is doing. It also
reports the in-process CPU time of the slowest messages, i.e. how far real
mail stays below the budget. Writes bench/results/budget.json and the budget
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PEERS, REPO, peer_split, reference_loop_seconds, run_facts, update_section
from spamgate.model.bundled import bundled_model_path
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.pool import ScoringPool, _proc_cpu_seconds

BEGIN, END = "<!-- budget:begin -->", "<!-- budget:end -->"


def _in_process_chunk(scorer: Any, raws: list[bytes]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for raw in raws:
        scorer.score(raw, top_k=5)
    return time.perf_counter() - wall, time.process_time() - cpu


def _pool_chunk(
    pool: ScoringPool, worker_pid: int, scorer: Any, raws: list[bytes]
) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    wcpu = _proc_cpu_seconds(worker_pid) or 0.0
    cut = 0
    for raw in raws:
        try:
            pool.score(scorer, raw, 5)
        except Exception:
            cut += 1
    wcpu = (_proc_cpu_seconds(worker_pid) or 0.0) - wcpu
    return time.perf_counter() - wall, time.process_time() - cpu + wcpu, cut


def compare(
    scorer: Any, raws: list[bytes], budget_ms: int, repeat: int, chunk: int = 250
) -> dict[str, Any]:
    """Both paths over the same chunks, alternating, each chunk's fastest of ``repeat`` runs.

    This VM's speed drifts by up to 2x within minutes and other jobs share its
    two cores; timing the paths one after the other gave the pool anything from
    -0.03 to +1.07 ms of added CPU a message. Alternating chunk by chunk and
    keeping each chunk's fastest run compares them under the same conditions.
    """
    per = np.empty(len(raws))
    for i, raw in enumerate(raws):  # per-message CPU, for how far real mail is from the budget
        t = time.process_time()
        scorer.score(raw, top_k=5)
        per[i] = 1000 * (time.process_time() - t)
    best = {"ip_wall": 0.0, "ip_cpu": 0.0, "pool_wall": 0.0, "pool_cpu": 0.0}
    cut = 0
    with ScoringPool(1, budget_ms) as pool:
        pool.warm(scorer)
        worker = next(iter(pool._live))
        for a in range(0, len(raws), chunk):
            part = raws[a : a + chunk]
            ip = [_in_process_chunk(scorer, part) for _ in range(repeat)]
            pl = [_pool_chunk(pool, worker.pid, scorer, part) for _ in range(repeat)]
            best["ip_wall"] += min(w for w, _ in ip)
            best["ip_cpu"] += min(c for _, c in ip)
            best["pool_wall"] += min(w for w, _, _ in pl)
            best["pool_cpu"] += min(c for _, c, _ in pl)
            cut += pl[0][2]
    n = len(raws)
    return {**{k: 1000 * v / n for k, v in best.items()}, "cut": cut, "per": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder the corpora were unpacked into")
    ap.add_argument("--split", default="S2", help="peers' split whose test half is scored")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--budget-ms", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="runs per chunk; the fastest counts")
    ap.add_argument("--peers", type=Path, default=PEERS)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)

    raws = [m.raw for m in peer_split(args.split, args.data, args.peers).test[: args.messages]]
    holder = ModelHolder()
    scorer = holder.load(bundled_model_path())
    scorer.score(raws[0])
    ref = reference_loop_seconds()
    c = compare(scorer, raws, args.budget_ms, args.repeat)
    ip_wall, ip_cpu, pool_wall, pool_cpu, cut, per = (
        c["ip_wall"], c["ip_cpu"], c["pool_wall"], c["pool_cpu"], c["cut"], c["per"]
    )
    slowest = np.sort(per)[::-1]
    result = {
        **run_facts("python bench/budget.py " + shlex.join(sys.argv[1:] if argv is None else argv)),
        "reference_loop_s": round(ref, 3),
        "messages": len(raws),
        "split": args.split,
        "budget_ms": args.budget_ms,
        "in_process": {"wall_ms": round(ip_wall, 3), "cpu_ms": round(ip_cpu, 3)},
        "pool": {"wall_ms": round(pool_wall, 3), "cpu_ms": round(pool_cpu, 3), "cut_by_budget": cut},
        "added_cpu_ms": round(pool_cpu - ip_cpu, 3),
        "added_wall_ms": round(pool_wall - ip_wall, 3),
        "in_process_cpu_ms": {
            "p50": round(float(np.percentile(per, 50)), 3),
            "p99": round(float(np.percentile(per, 99)), 3),
            "p99_9": round(float(np.percentile(per, 99.9)), 3),
            "max": round(float(slowest[0]), 3),
        },
    }
    print(json.dumps(result, indent=2))
    if args.no_write:
        return 0
    out = REPO / "bench" / "results" / "budget.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    q = result["in_process_cpu_ms"]
    section = f"""{BEGIN}
## The per-message CPU budget: what it costs

Command: `{result["command"]}` ({result["date"]}, {result["machine"]}; reference loop {ref:.3f} s;
{len(raws)} messages of {args.split}'s test half, one at a time as the server scores them; the two paths
alternate in chunks of 250, each chunk's fastest of {args.repeat} runs).

Scoring runs in worker processes that are killed when a message uses more than `[limits]
cpu_budget_ms` ({args.budget_ms} ms) of CPU (`service/scoring/pool.py`). CPU is counted over both
processes (the caller and the worker, from `/proc`).

| path | wall ms / message | CPU ms / message |
|---|---|---|
| in process (`Scorer.score`, no budget) | {ip_wall:.3f} | {ip_cpu:.3f} |
| scoring pool, 1 worker (budget {args.budget_ms} ms) | {pool_wall:.3f} | {pool_cpu:.3f} |
| **added by the pool** | **{pool_wall - ip_wall:+.3f}** | **{pool_cpu - ip_cpu:+.3f}** |

Real mail against the budget (in-process CPU ms per message): median {q["p50"]}, p99 {q["p99"]},
p99.9 {q["p99_9"]}, slowest {q["max"]}; messages cut by the budget in the pool run: {cut}.
{END}
"""
    update_section(REPO / "BENCHMARKS.md", BEGIN, END, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
