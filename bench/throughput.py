"""End-to-end throughput and latency of a running ``spamgate serve``.

    python bench/throughput.py [--data DATA] [--messages 2000] [--clients 1,4,8]

Starts ``spamgate serve`` on a free 127.0.0.1 port (bundled model), sends a
realistic mix (trec07p_dev test half and SpamAssassin messages from DATA when
present, generated messages otherwise) with 1 and several concurrent clients,
each a blocking Classify loop on its own channel, and reports messages/second
and p50/p99 latency. Writes bench/results/throughput.json and the throughput
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, update_section
from spamgate.service.api.client import SpamGateClient
from spamgate.service.api.launch import start_serve
from spamgate.training.corpora import read_corpus

BEGIN, END = "<!-- throughput:begin -->", "<!-- throughput:end -->"


def message_mix(data: Path | None, n: int, seed: int = 0) -> tuple[list[bytes], str]:
    """Up to ``n`` real messages from DATA, shuffled; generated ones if DATA is absent."""
    msgs: list[bytes] = []
    if data is not None:
        for name in ("trec07p_dev", "spamassassin"):
            if (data / name).is_dir():
                msgs.extend(m.raw for m in read_corpus(data / name, "dir"))
    if msgs:
        random.Random(seed).shuffle(msgs)
        return msgs[:n], f"{min(n, len(msgs))} messages from trec07p_dev + spamassassin in {data}"
    from tests.mail import generated_corpus

    gen = [raw for _, raw in generated_corpus(n)]
    return gen, f"{len(gen)} generated messages (no corpora found)"


def _run_clients(target: str, msgs: list[bytes], clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    lock = threading.Lock()
    errors = [0]
    chunks = [msgs[i::clients] for i in range(clients)]

    def work(chunk: list[bytes]) -> None:
        local: list[float] = []
        with SpamGateClient(target, timeout=30) as c:
            for raw in chunk:
                t = time.perf_counter()
                try:
                    c.classify(raw)
                except Exception:
                    with lock:
                        errors[0] += 1
                    continue
                local.append(time.perf_counter() - t)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=work, args=(ch,)) for ch in chunks]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {
        "clients": clients,
        "messages": len(lat),
        "errors": errors[0],
        "msgs_per_s": len(lat) / wall,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "mean_bytes": sum(len(m) for m in msgs) / len(msgs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / "data")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--processes", type=int, default=1, help="spamgate serve worker processes")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "throughput.json")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "bench/throughput.py", *(argv if argv is not None else sys.argv[1:])])
    msgs, mix = message_mix(args.data if args.data.is_dir() else None, args.messages)
    proc, port = start_serve(["--log-format", "text", "--processes", str(args.processes)])
    try:
        target = f"127.0.0.1:{port}"
        with SpamGateClient(target) as c:
            for raw in msgs[:50]:  # warm-up
                c.classify(raw)
        rows = []
        for n in (int(x) for x in args.clients.split(",")):
            r = _run_clients(target, msgs, n)
            rows.append(r)
            print(
                f"clients={n:<3} {r['msgs_per_s']:7.1f} msgs/s  p50 {r['p50_ms']:6.2f} ms  "
                f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "mix": mix, "rows": rows}, indent=1) + "\n")
    lines = [
        BEGIN,
        "## Service throughput (end to end over gRPC)",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, 2 cores; "
        "server and clients share the machine). Mix: " + mix + ".",
        "",
        f"Server worker processes: {args.processes}.",
        "",
        "| concurrent clients | msgs/s | p50 latency | p99 latency | errors |",
        "|---|---|---|---|---|",
        *(
            f"| {r['clients']} | {r['msgs_per_s']:.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms "
            f"| {r['errors']} |"
            for r in rows
        ),
        END,
    ]
    update_section(args.markdown, BEGIN, END, "\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
