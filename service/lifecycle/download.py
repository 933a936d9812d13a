"""Capped, streaming reads from a distribution point (a folder, or an HTTP(S) base URL).

Every read has a byte cap fixed before it starts: a file is streamed in 1 MiB
chunks to disk (never held whole in memory) and abandoned as soon as it goes
over its cap, so a hostile or broken server can cost at most the cap in disk
and a chunk in memory. HTTP answers whose Content-Length is over the cap are
refused before the body is read, and a redirect may not leave HTTP(S) nor go
from https:// to http://.

Every read also has a ``Deadline``: the socket timeout of 30 s bounds one
silent wait, not a transfer, and a server dripping a byte a second answers
every read in time, so it stalled a pull forever (issue 16). The body is read
with ``read1`` (one receive per call, not "until 1 MiB arrived") and the
deadline checked after each; the socket timeout is cut to the time left, so a
silent server is given up at the deadline too.

Checks between reads are not enough: ``urlopen`` reads the status line and up
to 100 header lines of 64 KiB each, and one ``read1`` of a chunked body reads
a chunk-size line of up to 64 KiB and then trailer lines with no limit on
their number, all without returning. A server dripping header bytes, or
sending an endless trailer, held a pull with ``--timeout 1`` for as long as it
kept sending (adversarial review; tests/test_pull_adversarial.py). So every
HTTP read also has a ``_Watchdog``: at the deadline it shuts down the read's
connections, and whatever http.client is blocked in returns at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from spamgate.model.errors import DataError

_CHUNK = 1 << 20
_TIMEOUT = 30.0  # seconds per socket operation (connect, each read)


class FetchError(DataError, ValueError):
    """A read that failed, went over its cap or past its deadline (the URL or path, and why)."""


@dataclass(frozen=True)
class Deadline:
    """When a read must be done (``time.monotonic()`` seconds), and what set it (for the message)."""

    at: float
    why: str

    def left(self) -> float:
        return self.at - time.monotonic()


class _Readable(Protocol):
    def read1(self, n: int = ..., /) -> bytes: ...


class _Watchdog:
    """Shuts down every connection of one read when its deadline passes (None: never).

    It keeps a ``dup`` of each connected socket: shutdown(2) acts on the connection, not the
    descriptor, so it also stops a TLS socket wrapped around the original (whose own descriptor
    object is detached by the wrapping), and a dup of our own cannot be closed and its number
    reused under us before ``__exit__`` closes it.
    """

    def __init__(self, deadline: Deadline | None) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = None if deadline is None else threading.Timer(max(0.0, deadline.left()), self._fire)

    def __enter__(self) -> _Watchdog:
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            for s in self._socks:
                s.close()
            self._socks.clear()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for s in self._socks:
                _shutdown(s)

    def connect(self, *args: Any, **kwargs: Any) -> socket.socket:
        """``socket.create_connection``, watched (a connection made after the deadline is cut at once)."""
        sock = socket.create_connection(*args, **kwargs)
        with self._lock:
            self._socks.append(sock.dup())
            if self.fired:
                _shutdown(self._socks[-1])
        return sock

    def opener(self) -> urllib.request.OpenerDirector:
        """The default opener, but every HTTP(S) connection it makes is watched."""
        return urllib.request.build_opener(_WatchedHTTP(self), _WatchedHTTPS(self), _Redirects())


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Refuse a redirect out of HTTP(S), or from https:// to http://, before following it.

    Checking the final URL after ``urlopen`` came too late: a redirect to ``ftp://`` was followed
    (urllib allows http, https and ftp) and the gateway connected to the host it named, outside the
    watchdog, and failed with an empty reason (adversarial review).
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url).scheme, urllib.parse.urlsplit(newurl).scheme
        if new not in ("http", "https") or (old == "https" and new != "https"):
            fp.close()
            raise FetchError(f"{req.full_url}: redirected to {newurl}; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched(urllib.request.AbstractHTTPHandler):
    watchdog: _Watchdog

    def do_open(self, http_class: Any, req: urllib.request.Request, **http_conn_args: Any) -> Any:
        def connection(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            conn = http_class(*args, **kwargs)
            conn._create_connection = self.watchdog.connect  # what connect() opens its socket with
            return conn

        return super().do_open(connection, req, **http_conn_args)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self.watchdog = watchdog


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self.watchdog = watchdog


def is_http(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def location(source: str, rel: str) -> str:
    """Where ``rel`` (made only of validated names joined by '/') lives under ``source``."""
    if is_http(source):
        return urllib.parse.urljoin(source.rstrip("/") + "/", rel)
    return str(Path(source) / rel)


@contextlib.contextmanager
def _open(
    source: str, rel: str, cap: int, deadline: Deadline | None, watchdog: _Watchdog
) -> Iterator[_Readable]:
    where = location(source, rel)
    if not is_http(source):
        # O_NONBLOCK: opening a FIFO planted in the folder must not hang; a regular file ignores it.
        try:
            fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise FetchError(f"{where}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(f"{where}: not a regular file")
            if st.st_size > cap:
                raise FetchError(f"{where}: {st.st_size} bytes, over the cap of {cap}")
            yield f
        return
    scheme = urllib.parse.urlsplit(source).scheme
    req = urllib.request.Request(where, headers={"Accept-Encoding": "identity"})
    try:
        resp = watchdog.opener().open(req, timeout=_socket_timeout(deadline))
    except FetchError:  # a redirect refused (_Redirects)
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        # One line: urllib's reason for a redirect loop spans three ("...infinite loop.\nThe last 30x...").
        raise FetchError(f"{where}: HTTP {exc.code} {' '.join(str(exc.reason).split())}") from exc
    except urllib.error.URLError as exc:
        if deadline is not None and (watchdog.fired or deadline.left() <= 0):
            raise FetchError(f"{where}: no answer by {deadline.why}; abandoned") from exc
        raise FetchError(f"{where}: {exc.reason}") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if deadline is not None and (watchdog.fired or deadline.left() <= 0):  # reading the status line
            raise FetchError(f"{where}: no answer by {deadline.why}; abandoned") from exc
        raise FetchError(f"{where}: {exc}") from exc
    with resp:
        final = urllib.parse.urlsplit(resp.geturl()).scheme
        if final not in ("http", "https") or (scheme == "https" and final != "https"):
            raise FetchError(f"{where}: redirected to {resp.geturl()}; refused")
        length = resp.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > cap:
            raise FetchError(f"{where}: {int(length)} bytes, over the cap of {cap}")
        yield resp


def _socket_timeout(deadline: Deadline | None) -> float:
    """Seconds one connect or receive may wait: 30, or less when the deadline is nearer."""
    return _TIMEOUT if deadline is None else max(0.01, min(_TIMEOUT, deadline.left()))


def _stream(
    source: str,
    rel: str,
    cap: int,
    sink: BinaryIO | None,
    keep: bytearray | None,
    deadline: Deadline | None,
) -> tuple[int, str]:
    where = location(source, rel)
    h = hashlib.sha256()
    n = 0
    start = time.monotonic()
    with _Watchdog(deadline) as watchdog, _open(source, rel, cap, deadline, watchdog) as f:
        while True:
            try:
                chunk = f.read1(min(_CHUNK, cap + 1 - n))
            except (OSError, http.client.HTTPException) as exc:  # a socket timeout is an OSError
                if deadline is not None and (watchdog.fired or deadline.left() <= 0):
                    raise _late(where, n, start, deadline) from exc
                raise FetchError(f"{where}: read failed after {n} bytes: {exc}") from exc
            if deadline is not None and (watchdog.fired or (chunk and deadline.left() < 0)):
                # fired: the end seen may be the shutdown's, not the server's
                raise _late(where, n + len(chunk), start, deadline)
            if not chunk:
                break
            n += len(chunk)
            if n > cap:
                raise FetchError(f"{where}: more than the cap of {cap} bytes; abandoned")
            h.update(chunk)
            if sink is not None:
                sink.write(chunk)
            if keep is not None:
                keep += chunk
    return n, h.hexdigest()


def _late(where: str, n: int, start: float, deadline: Deadline) -> FetchError:
    took = time.monotonic() - start
    return FetchError(f"{where}: {n} bytes in {took:.1f} s, not done by {deadline.why}; abandoned")


def fetch_bytes(source: str, rel: str, cap: int, deadline: Deadline | None = None) -> bytes:
    """A small file (index, signature) read whole; at most ``cap`` bytes, done by ``deadline``."""
    buf = bytearray()
    _stream(source, rel, cap, None, buf, deadline)
    return bytes(buf)


def fetch_file(
    source: str, rel: str, dest: Path, cap: int, deadline: Deadline | None = None
) -> tuple[int, str]:
    """Stream ``rel`` to a new file ``dest``; (size, sha256). At most ``cap`` bytes, by ``deadline``."""
    try:
        with open(dest, "xb") as out:
            return _stream(source, rel, cap, out, None, deadline)
    except FetchError:
        raise
    except OSError as exc:  # writing: the disk, not the source
        raise FetchError(f"{dest}: {exc.strerror}") from exc
