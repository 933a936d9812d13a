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
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

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


def is_http(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def location(source: str, rel: str) -> str:
    """Where ``rel`` (made only of validated names joined by '/') lives under ``source``."""
    if is_http(source):
        return urllib.parse.urljoin(source.rstrip("/") + "/", rel)
    return str(Path(source) / rel)


@contextlib.contextmanager
def _open(source: str, rel: str, cap: int, deadline: Deadline | None) -> Iterator[_Readable]:
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
        resp = urllib.request.urlopen(req, timeout=_socket_timeout(deadline))
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FetchError(f"{where}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if deadline is not None and deadline.left() <= 0:
            raise FetchError(f"{where}: no answer by {deadline.why}; abandoned") from exc
        raise FetchError(f"{where}: {exc.reason}") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if deadline is not None and deadline.left() <= 0:  # a timeout reading the status line
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
    with _open(source, rel, cap, deadline) as f:
        while True:
            try:
                chunk = f.read1(min(_CHUNK, cap + 1 - n))
            except (OSError, http.client.HTTPException) as exc:  # a socket timeout is an OSError
                if deadline is not None and deadline.left() <= 0:
                    raise _late(where, n, start, deadline) from exc
                raise FetchError(f"{where}: read failed after {n} bytes: {exc}") from exc
            if chunk and deadline is not None and deadline.left() < 0:
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
