"""Limits on ``ClassifyStream`` calls: a per-peer quota, a global cap, idle and total timeouts.

A stream's handler holds one RPC thread of the server's pool for as long as the
stream is open, even while it only waits for the client's next request. Without
limits, ``workers`` idle streams leave no thread for ``Classify`` or
``Health/Check``. So: at most ``max_streams`` (< ``workers``) are open at once and
at most ``max_streams_per_peer`` per client IP (more are refused at once with
RESOURCE_EXHAUSTED naming the key), and one watchdog thread closes a stream with
no request for ``stream_idle_seconds`` or open for ``stream_max_seconds``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import grpc

log = logging.getLogger("spamgate.streams")


def peer_host(peer: str) -> str:
    """The client's address without the port: what a per-peer quota counts.

    ``ipv4:127.0.0.1:5000`` → ``127.0.0.1``; ``ipv6:[::1]:5000`` (or its
    %-encoded form) → ``::1``; ``unix:/run/x.sock`` and anything else → as given
    (every client of one unix socket is one peer).
    """
    kind, _, rest = peer.partition(":")
    rest = urllib.parse.unquote(rest)
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        if rest.startswith("["):
            return rest[1:].partition("]")[0]
        return rest.rpartition(":")[0] or rest
    return peer


@dataclass
class _Stream:
    id: int
    peer: str
    context: Any
    opened: float
    last: float
    busy: bool = False  # a request is being answered: not idle, however long scoring takes
    closed_by: str = ""


@dataclass
class StreamLimits:
    idle_seconds: float = 30.0
    max_seconds: float = 600.0
    per_peer: int = 2
    max_streams: int = 4


@dataclass
class StreamGuard:
    """Admits, tracks and times out streams; thread-safe; one watchdog thread, started on first use."""

    limits: StreamLimits = field(default_factory=StreamLimits)
    clock: Any = time.monotonic

    def __post_init__(self) -> None:
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._stopped = False
        self._watchdog: threading.Thread | None = None

    def open_count(self, peer: str | None = None) -> int:
        with self._cond:
            return sum(1 for s in self._streams.values() if peer is None or s.peer == peer)

    def waiting_count(self) -> int:
        """Open streams not answering a request now: each holds an RPC thread outside the scoring pool."""
        with self._cond:
            return sum(1 for s in self._streams.values() if not s.busy)

    def admit(self, context: Any) -> tuple[int, str]:
        """(ticket, "") for an admitted stream, or (0, why) for one refused."""
        peer = peer_host(context.peer())
        lim = self.limits
        with self._cond:
            if len(self._streams) >= lim.max_streams:
                return 0, (
                    f"too many open streams: {len(self._streams)} of [server] max_streams = {lim.max_streams}"
                )
            mine = sum(1 for s in self._streams.values() if s.peer == peer)
            if mine >= lim.per_peer:
                return 0, (
                    f"too many open streams from {peer}: {mine} of"
                    f" [server] max_streams_per_peer = {lim.per_peer}"
                )
            now = self.clock()
            ticket = next(self._ids)
            self._streams[ticket] = _Stream(ticket, peer, context, now, now)
            if self._watchdog is None and not self._stopped:
                self._watchdog = threading.Thread(target=self._watch, name="spamgate-streams", daemon=True)
                self._watchdog.start()
            self._cond.notify_all()
        return ticket, ""

    def touch(self, ticket: int, busy: bool) -> None:
        """A request arrived (``busy``) or its answer went out (not ``busy``): idle time starts again."""
        with self._cond:
            s = self._streams.get(ticket)
            if s is not None:
                s.last = self.clock()
                s.busy = busy
                self._cond.notify_all()

    def release(self, ticket: int) -> str:
        """The stream ended; returns why the watchdog closed it ("" if it did not)."""
        with self._cond:
            s = self._streams.pop(ticket, None)
            return s.closed_by if s is not None else ""

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2)

    def _due(self, s: _Stream) -> float:
        end = s.opened + self.limits.max_seconds
        return end if s.busy else min(s.last + self.limits.idle_seconds, end)

    def _watch(self) -> None:
        lim = self.limits
        while True:
            expired: list[tuple[_Stream, str]] = []
            with self._cond:
                if self._stopped:
                    return
                now = self.clock()
                pending = [s for s in self._streams.values() if not s.closed_by]
                for s in pending:
                    if now - s.opened >= lim.max_seconds:
                        s.closed_by = f"stream open for {lim.max_seconds:g} s ([server] stream_max_seconds)"
                    elif not s.busy and now - s.last >= lim.idle_seconds:
                        s.closed_by = f"stream idle for {lim.idle_seconds:g} s ([server] stream_idle_seconds)"
                    if s.closed_by:
                        expired.append((s, s.closed_by))
                rest = [self._due(s) for s in pending if not s.closed_by]
                if not expired:
                    self._cond.wait(timeout=max(0.01, min(rest) - now) if rest else None)
                    continue
            for s, why in expired:  # outside the lock: cancelling runs gRPC callbacks
                log.info("stream closed", extra={"peer": s.peer, "why": why})
                cancel_with_status(s.context, grpc.StatusCode.UNAVAILABLE, why + "; open a new stream")


def cancel_with_status(context: Any, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread with ``code`` and ``details`` for the client.

    ``ServicerContext.cancel`` would end it as a bare CANCELLED; gRPC core can
    cancel with a status (grpc_call_cancel_with_status), which grpcio's call
    object exposes. If that is not there (another grpcio), a plain cancel.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(code.value[0], details)  # type: ignore[union-attr]
    except Exception:  # any failure: fall back to the public API
        context.cancel()
