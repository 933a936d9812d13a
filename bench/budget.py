"""What the per-message CPU budget costs, and how far real mail is from it.

    python bench/budget.py --data DATA [--split S2] [--messages 3000] [--budget-ms 500]

Scoring moved into worker processes (``service.scoring_pool``) so that a
message over ``[limits] cpu_budget_ms`` can be killed. That adds a pipe
round trip and a JSON answer per message. This benchmark scores the same
messages (the test half of a peers' split) one at a time, as the server
does, two ways:

- in process: ``Scorer.score(raw, top_k=5)`` in this thread (the old path);
- pool: ``ScoringPool.score`` with one worker, so both paths use one core.

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
import platform
import shlex
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PEERS, REPO, peer_split, reference_loop_seconds, update_section
from model.bundled import bundled_model_path
from service.registry import ModelHolder
from service.scoring_pool import ScoringPool, _proc_cpu_seconds

BEGIN, END = "<!-- budget:begin -->", "<!-- budget:end -->"


def in_process(scorer: Any, raws: list[bytes]) -> tuple[float, float, np.ndarray]:
    """(wall ms/msg, CPU ms/msg, per-message CPU ms) scoring in this thread."""
    per = np.empty(len(raws))
    wall, cpu = time.perf_counter(), time.process_time()
    for i, raw in enumerate(raws):
        t = time.process_time()
        scorer.score(raw, top_k=5)
        per[i] = time.process_time() - t
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return 1000 * wall / len(raws), 1000 * cpu / len(raws), 1000 * per


def pooled(scorer: Any, raws: list[bytes], budget_ms: int) -> tuple[float, float, int]:
    """(wall ms/msg, CPU ms/msg over both processes, messages cut by the budget) through a pool."""
    with ScoringPool(1, budget_ms) as pool:
        pool.wait_ready(60)
        pool.score(scorer, raws[0], 5)  # the worker loads the model before the clock starts
        worker = next(iter(pool._live))
        wall, cpu = time.perf_counter(), time.process_time()
        wcpu = _proc_cpu_seconds(worker.pid) or 0.0
        cut = 0
        for raw in raws:
            try:
                pool.score(scorer, raw, 5)
            except Exception:
                cut += 1
        wcpu = (_proc_cpu_seconds(worker.pid) or 0.0) - wcpu
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return 1000 * wall / len(raws), 1000 * (cpu + wcpu) / len(raws), cut


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder the corpora were unpacked into")
    ap.add_argument("--split", default="S2", help="peers' split whose test half is scored")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--budget-ms", type=int, default=500)
    ap.add_argument("--peers", type=Path, default=PEERS)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)

    raws = [m.raw for m in peer_split(args.split, args.data, args.peers).test[: args.messages]]
    holder = ModelHolder()
    scorer = holder.load(bundled_model_path())
    scorer.score(raws[0])
    ref = reference_loop_seconds()
    ip_wall, ip_cpu, per = in_process(scorer, raws)
    pool_wall, pool_cpu, cut = pooled(scorer, raws, args.budget_ms)
    slowest = np.sort(per)[::-1]
    result = {
        "command": "python bench/budget.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
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
{len(raws)} messages of {args.split}'s test half, one at a time as the server scores them).

Scoring runs in worker processes that are killed when a message uses more than `[limits]
cpu_budget_ms` ({args.budget_ms} ms) of CPU (`service/scoring_pool.py`). CPU is counted over both
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
