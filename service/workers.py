"""Running ``spamgate serve``: one process, or several sharing the port.

One Python process scores on one core (the GIL). With ``[server] processes
= N`` the parent starts N worker processes (spawned, so none inherits gRPC
state through fork) that each bind the same port with SO_REUSEPORT; the
kernel spreads connections across them. The parent forwards SIGTERM/SIGINT
(graceful stop) and SIGHUP (policy and model reload) and serves the metrics
of all workers (prometheus-client's multi-process mode). In that mode the
``spamgate_model`` info metric is not exported (prometheus-client does not
aggregate Info metrics across processes); the ``spamgate_model_loaded``
gauge carries the same, per worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import replace
from typing import Any

from service.config import Config

log = logging.getLogger("spamgate.serve")


def serve_forever(cfg: Config, announce: bool = True, reuse_port: bool = False, ready: Any = None) -> int:
    """Serve in this process until SIGTERM/SIGINT; SIGHUP reloads policy and follows the registry."""
    from service.logs import setup_logging
    from service.registry import ModelHolder
    from service.server import start_server

    setup_logging(cfg.logging.format, cfg.logging.level)
    holder = ModelHolder(cfg.limits)
    try:
        running = start_server(cfg, holder, reuse_port=reuse_port)
    except (OSError, RuntimeError) as exc:
        print(f"spamgate serve: cannot start: {exc}", file=sys.stderr)
        return 2
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info(
            "shutting down",
            extra={"signal": signal.Signals(signum).name, "grace_s": cfg.server.grace_seconds},
        )
        stopping.set()

    def reload() -> None:
        running.engine.policies.reload()  # a bad file keeps the old policy (logged)
        if running.watcher is not None:
            running.watcher.check()  # follow the registry pointer now, not at the next poll

    def on_hup(_signum: int, _frame: Any) -> None:
        # Off the signal handler's stack: reloading reads files and may load a model.
        threading.Thread(target=reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    log.info(
        "listening",
        extra={
            "address": cfg.server.address,
            "port": running.port,
            "metrics_port": running.metrics_port,
            "pid": os.getpid(),
        },
    )
    if announce:
        # The port line on stdout lets scripts (and tests) find an ephemeral port.
        print(f"spamgate serving on {cfg.server.address}:{running.port}", flush=True)
    try:
        scorer = holder.load(cfg.model_path)
    except Exception as exc:
        log.error("model failed to load", extra={"path": str(cfg.model_path), "error": str(exc)})
        running.stop(0).wait()
        return 2
    log.info("model loaded", extra={"version": scorer.version, "path": str(cfg.model_path)})
    if ready is not None:
        ready.set()  # tell the parent this worker serves
    stopping.wait()
    running.stop(cfg.server.grace_seconds).wait()
    log.info("stopped")
    return 0


def _worker(cfg: Config, ready: Any) -> None:
    sys.exit(serve_forever(cfg, announce=False, reuse_port=True, ready=ready))


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def run_workers(cfg: Config) -> int:
    """Start ``cfg.server.processes`` workers on one port; return when they have all stopped."""
    from service.logs import setup_logging

    setup_logging(cfg.logging.format, cfg.logging.level)
    port = cfg.server.port or _free_port(cfg.server.address)
    metrics_dir = tempfile.mkdtemp(prefix="spamgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
    worker_cfg = replace(
        cfg, server=replace(cfg.server, port=port, processes=1), metrics=replace(cfg.metrics, port=0)
    )
    ctx = multiprocessing.get_context("spawn")
    readies = [ctx.Event() for _ in range(cfg.server.processes)]
    workers = [
        ctx.Process(target=_worker, args=(worker_cfg, ready), name=f"spamgate-worker-{i}")
        for i, ready in enumerate(readies)
    ]
    for w in workers:
        w.start()
    if cfg.metrics.port:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=metrics_dir)
        start_http_server(cfg.metrics.port, addr=cfg.metrics.address, registry=registry)
    stopping = threading.Event()

    def forward(signum: int, _frame: Any) -> None:
        for w in workers:
            if w.pid is not None and w.is_alive():
                os.kill(w.pid, signal.SIGTERM if signum in (signal.SIGTERM, signal.SIGINT) else signum)
        if signum != signal.SIGHUP:
            stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    log.info(
        "workers started",
        extra={"port": port, "processes": cfg.server.processes, "pids": [w.pid for w in workers]},
    )
    # Announce only once every worker serves: a client (or a SIGTERM) before that
    # would meet a half-started pool.
    for ready, w in zip(readies, workers, strict=True):
        while not ready.wait(0.2):
            if not w.is_alive():
                log.error("a worker failed to start", extra={"exitcode": w.exitcode})
                forward(signal.SIGTERM, None)
                break
    print(f"spamgate serving on {cfg.server.address}:{port}", flush=True)
    try:
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(timeout=0.5)
            if not stopping.is_set() and any(w.exitcode not in (None, 0) for w in workers):
                log.error(
                    "a worker died; stopping the others", extra={"exitcodes": [w.exitcode for w in workers]}
                )
                forward(signal.SIGTERM, None)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    # A worker stopped by the SIGTERM we forwarded before it installed its handler is a clean stop too.
    clean = (0, -signal.SIGTERM) if stopping.is_set() else (0,)
    return 0 if all(w.exitcode in clean for w in workers) else 1
