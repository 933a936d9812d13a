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

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any, NoReturn

from spamgate.model.errors import SpamgateError
from spamgate.model.exit_codes import EX_CONFIG, exit_code
from spamgate.service.runtime.config import Config

log = logging.getLogger("spamgate.serve")


class StopSignals:
    """SIGTERM/SIGINT/SIGHUP, recorded by handlers that take no lock and do no I/O.

    A Python signal handler runs on the main thread between two bytecodes,
    wherever that thread happens to be. The old handler logged and called
    ``threading.Event.set()``: when the signal landed while the main thread
    was inside ``Event.wait()`` holding the event's own (non-reentrant) lock
    (right after ``model loaded``, as the main thread entered its wait), the
    handler blocked on that lock forever and the server ignored SIGTERM. These
    handlers only store a number; the main thread polls and does the rest.
    """

    POLL_SECONDS = 0.05

    def __init__(self) -> None:
        self.stop_signum = 0  # first SIGTERM/SIGINT (0: none yet)
        self.hups = 0  # SIGHUPs received (only the handler writes it)

    def install(self) -> StopSignals:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.hups += 1
        elif not self.stop_signum:
            self.stop_signum = signum

    @property
    def stopping(self) -> bool:
        return self.stop_signum != 0

    def nap(self) -> None:
        time.sleep(self.POLL_SECONDS)


def _exit_now(code: int) -> NoReturn:
    """Flush logs and stdio, then leave without the interpreter's teardown.

    After a stop the work is done; what remains of a normal exit is joining
    every non-daemon thread (an RPC handler still running past the grace period
    would hold the process forever) and tearing down numpy, gRPC and the rest
    (0.4 s of CPU here, seconds on a busy machine), and joining child processes
    one by one. None of it may stand between a SIGTERM and the exit that
    ``grace_seconds`` promises; children still running are killed.
    """
    for child in multiprocessing.active_children():
        child.kill()  # scoring workers: done with, and nothing of theirs is worth waiting for
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def serve_forever(cfg: Config, announce: bool = True, reuse_port: bool = False, ready: Any = None) -> int:
    """Serve in this process until SIGTERM/SIGINT; SIGHUP reloads policy and follows the registry.

    A SIGTERM at any moment once this function runs (while importing, binding,
    loading the model or serving) stops the process within ``grace_seconds``
    plus a fraction of a second; one before it (interpreter start) kills it
    with the default action. Returns only on a start-up failure: a stop ends
    the process (``_exit_now``).
    """
    signals = StopSignals().install()
    from spamgate.service.api.server import start_server
    from spamgate.service.runtime.logs import setup_logging
    from spamgate.service.scoring.model_holder import ModelHolder

    setup_logging(cfg.logging.format, cfg.logging.level)
    holder = ModelHolder(cfg.limits)
    try:
        running = start_server(cfg, holder, reuse_port=reuse_port)
    except SpamgateError as exc:
        # PolicyError (the file changed for the worse since the configuration was checked), TlsError,
        # TokensError, AdminSocketError, KeyFileError: 78 (model.exit_codes)
        code = exit_code(exc)
        why = "; ".join(getattr(exc, "errors", None) or [str(exc)])
        what = "configuration error" if code == EX_CONFIG else "cannot start"
        print(f"spamgate serve: {what}: {why}", file=sys.stderr)
        return code
    except (FileNotFoundError, PermissionError, IsADirectoryError, sqlite3.Error) as exc:
        # a key file that is unreadable, a feedback database that cannot be opened, ...
        print(f"spamgate serve: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (OSError, RuntimeError) as exc:  # e.g. the port is taken
        print(f"spamgate serve: cannot start: {exc}", file=sys.stderr)
        return exit_code(exc)
    handled_hups = signals.hups  # the policy was read just now

    def reload() -> None:
        running.engine.policies.reload()  # a bad file keeps the old policy (logged)
        if running.watcher is not None:
            running.watcher.check()  # follow the registry pointer now, not at the next poll

    log.info(
        "listening",
        extra={
            "address": cfg.server.address,
            "port": running.port,
            "metrics_port": running.metrics_port,
            "admin_socket": str(running.admin.path) if running.admin else "",
            "tls": cfg.tls.enabled,
            "pid": os.getpid(),
        },
    )
    if announce:
        # The port line on stdout lets scripts (and tests) find an ephemeral port.
        print(f"spamgate serving on {cfg.server.address}:{running.port}", flush=True)

    # The model loads off the main thread, so a SIGTERM during a long load is not held up by it.
    load_failed: list[str] = []

    def load() -> None:
        try:
            scorer = holder.load(cfg.model_path)
        except Exception as exc:
            log.error("model failed to load", extra={"path": str(cfg.model_path), "error": str(exc)})
            print(f"spamgate serve: configuration error: model {cfg.model_path}: {exc}", file=sys.stderr)
            load_failed.append(str(exc))
            return
        log.info("model loaded", extra={"version": scorer.version, "path": str(cfg.model_path)})
        if ready is not None:
            ready.set()  # tell the parent this worker serves

    threading.Thread(target=load, name="model-load", daemon=True).start()
    while not signals.stopping and not load_failed:
        if signals.hups != handled_hups:
            handled_hups = signals.hups
            # Off the main thread: reloading reads files and may load a model.
            threading.Thread(target=reload, name="reload", daemon=True).start()
        signals.nap()
    # The configured model cannot be served (damaged, unsigned, foreign features): a configuration error.
    code = EX_CONFIG if load_failed and not signals.stopping else 0
    grace = cfg.server.grace_seconds if code == 0 else 0.0
    if code == 0:
        log.info(
            "shutting down",
            extra={"signal": signal.Signals(signals.stop_signum).name, "grace_s": grace},
        )
    stopped = running.stop(grace)
    stopped.wait(grace + 0.2)
    log.info("stopped")
    _exit_now(code)


def _worker(cfg: Config, ready: Any) -> None:
    sys.exit(serve_forever(cfg, announce=False, reuse_port=True, ready=ready))


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def run_workers(cfg: Config) -> int:
    """Start ``cfg.server.processes`` workers on one port; return when they have all stopped.

    The parent forwards SIGTERM/SIGINT (as SIGTERM) and SIGHUP to the workers.
    Its handlers only record the signal (see ``StopSignals``); the loop below
    forwards it. A worker still alive ``grace_seconds`` + 0.5 s after the
    forwarded SIGTERM is killed, so the whole pool is gone within the grace
    period plus a second.
    """
    signals = StopSignals().install()
    from spamgate.service.runtime.logs import setup_logging

    setup_logging(cfg.logging.format, cfg.logging.level)
    port = cfg.server.port or _free_port(cfg.server.address)
    metrics_dir = tempfile.mkdtemp(prefix="spamgate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
    worker_cfg = replace(
        cfg, server=replace(cfg.server, port=port, processes=1), metrics=replace(cfg.metrics, port=0)
    )
    # One Unix socket cannot be shared like the TCP port: the first worker serves the admin
    # socket. A ReloadPolicy there reloads that worker only (SIGHUP to the parent reloads all);
    # ActivateModel moves the registry pointer, which every worker follows.
    from spamgate.service.api.admin_socket import OFF, socket_path

    admin_path = socket_path(cfg.admin, port)
    sockets = [str(admin_path) if admin_path and i == 0 else OFF for i in range(cfg.server.processes)]
    worker_cfgs = [replace(worker_cfg, admin=replace(cfg.admin, socket=s)) for s in sockets]
    ctx = multiprocessing.get_context("spawn")
    readies = [ctx.Event() for _ in range(cfg.server.processes)]
    workers = [
        ctx.Process(target=_worker, args=(wcfg, ready), name=f"spamgate-worker-{i}")
        for i, (wcfg, ready) in enumerate(zip(worker_cfgs, readies, strict=True))
    ]
    for w in workers:
        if not signals.stopping:
            w.start()
    if cfg.metrics.port and not signals.stopping:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=metrics_dir)
        start_http_server(cfg.metrics.port, addr=cfg.metrics.address, registry=registry)
    handled_hups = signals.hups
    stop_sent: float | None = None  # monotonic time the workers were told to stop

    def forward(sig: int) -> None:
        for w in workers:
            if w.pid is not None and w.is_alive():
                os.kill(w.pid, sig)

    def step() -> None:
        """Forward what arrived since the last step; kill workers past their grace."""
        nonlocal handled_hups, stop_sent
        if signals.stopping and stop_sent is None:
            log.info(
                "shutting down",
                extra={
                    "signal": signal.Signals(signals.stop_signum).name,
                    "grace_s": cfg.server.grace_seconds,
                },
            )
            stop_sent = time.monotonic()
            forward(signal.SIGTERM)
        elif signals.hups != handled_hups:
            handled_hups = signals.hups
            if stop_sent is None:
                forward(signal.SIGHUP)
        if stop_sent is not None and time.monotonic() - stop_sent > cfg.server.grace_seconds + 0.5:
            forward(signal.SIGKILL)

    log.info(
        "workers started",
        extra={
            "port": port,
            "processes": cfg.server.processes,
            "pids": [w.pid for w in workers],
            "admin_socket": str(admin_path or ""),
        },
    )
    # Announce only once every worker serves: a client before that would meet a half-started pool.
    failed = False
    for ready, w in zip(readies, workers, strict=True):
        while not failed and not signals.stopping and not ready.wait(StopSignals.POLL_SECONDS):
            step()
            if not w.is_alive():
                log.error("a worker failed to start", extra={"exitcode": w.exitcode})
                failed = True
                stop_sent = time.monotonic()
                forward(signal.SIGTERM)
    if not signals.stopping and not failed:
        print(f"spamgate serving on {cfg.server.address}:{port}", flush=True)
    try:
        while any(w.pid is not None and w.is_alive() for w in workers):
            step()
            if stop_sent is None and any(w.exitcode not in (None, 0) for w in workers):
                log.error(
                    "a worker died; stopping the others", extra={"exitcodes": [w.exitcode for w in workers]}
                )
                failed = True
                stop_sent = time.monotonic()
                forward(signal.SIGTERM)
            signals.nap()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    # A worker stopped by the SIGTERM we forwarded before it installed its handler is a clean stop too.
    clean = (0, -signal.SIGTERM) if signals.stopping and not failed else (0,)
    code = 0 if all(w.pid is None or w.exitcode in clean for w in workers) else 1
    if any(w.exitcode == EX_CONFIG for w in workers):
        code = EX_CONFIG
    log.info("stopped", extra={"exitcodes": [w.exitcode for w in workers]})
    _exit_now(code)
