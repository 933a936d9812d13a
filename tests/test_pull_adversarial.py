"""Adversarial review of ``spamgate models pull``: a malicious or compromised mirror on 127.0.0.1.

The server here speaks raw bytes (``Mirror``), so it can do what a static web server never does: drip
headers, send an endless chunked trailer, lie about encodings, redirect anywhere. Each test is one
attack and what it meets. Versions are copies of the session's small model (``test_shipping.version``).
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spamgate.model.artifact import Artifact
from spamgate.model.signing import generate_keypair
from spamgate.service.cli.main import main
from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.service.lifecycle.ship_index import INDEX
from spamgate.service.lifecycle.shipping import publish
from tests.test_shipping import leftovers, version

Keys = tuple[Path, Path]
# What a handler does with a request: write raw bytes to the socket (it may stop when the client leaves).
Handler = Callable[[socket.socket], None]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return generate_keypair(tmp_path_factory.mktemp("keys") / "signing")


@dataclass
class Mirror:
    """A raw HTTP/1.1 server on 127.0.0.1: files under ``root`` as a static server would send them,
    unless ``special`` maps the request path (without the leading '/') to a handler of its own."""

    root: Path
    url: str = ""
    special: dict[str, Handler] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def _send(sock: socket.socket, data: bytes) -> bool:
    """False once the client has gone (the handler stops)."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    site = Mirror(tmp_path / "dist")
    site.root.mkdir()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            head = b""
            while b"\r\n\r\n" not in head:
                more = sock.recv(4096)
                if not more:
                    return
                head += more
            path = head.split(b" ")[1].decode().lstrip("/")
            site.requests.append(path)
            if path in site.special:
                site.special[path](sock)
                return
            try:
                body = (site.root / path).read_bytes()
            except OSError:
                _send(sock, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            _send(sock, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            _send(sock, body)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    httpd = Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    site.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield site
    httpd.shutdown()
    httpd.server_close()


def cli_pull(source: str, registry: Path, *extra: str) -> int:
    return main(["models", "pull", "--from", source, "--registry", str(registry), *extra])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def for_at_most(seconds: float, sock: socket.socket, piece: bytes, every: float) -> None:
    """Send ``piece`` every ``every`` s for ``seconds`` (bounded: the test server never outlives a test)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and _send(sock, piece):
        time.sleep(every)


# 1. time: the pull's --timeout bounds the whole pull, whatever the server sends


def test_headers_dripped_a_byte_at_a_time_are_given_up_at_the_timeout(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each header byte comes well within the 30 s socket timeout; urlopen never returns on its own."""
    publish(version(small_model, tmp_path, "v1"), mirror.root)

    def drip_headers(sock: socket.socket) -> None:
        _send(sock, b"HTTP/1.1 200 OK\r\nX-Padding: ")
        for_at_most(15, sock, b"a", 0.05)  # one header line may be 64 KiB, and there may be 100

    mirror.special[INDEX] = drip_headers
    start = time.monotonic()
    assert cli_pull(mirror.url, tmp_path / "gw", "--allow-unsigned", "--timeout", "1") == 1
    assert time.monotonic() - start < 5
    assert "index.json" in one_line_error(capsys)


def test_an_endless_chunked_trailer_is_given_up_at_the_timeout(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    """The body is the index's exact bytes, then a trailer that never ends: http.client reads trailer
    lines with no limit on their number, inside one ``read1`` call, so no check between reads sees it."""
    publish(version(small_model, tmp_path, "v1"), mirror.root)
    body = (mirror.root / INDEX).read_bytes()

    def endless_trailer(sock: socket.socket) -> None:
        _send(sock, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        _send(sock, b"%x\r\n%s\r\n0\r\n" % (len(body), body))
        for_at_most(15, sock, b"X-Trailer: a\r\n" * 100, 0.01)

    mirror.special[INDEX] = endless_trailer
    gw = tmp_path / "gw"
    start = time.monotonic()
    assert cli_pull(mirror.url, gw, "--allow-unsigned", "--timeout", "1") == 1
    assert time.monotonic() - start < 5
    assert "not done by the pull's --timeout of 1 s" in one_line_error(capsys)
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []


def test_a_dripped_chunk_size_line_is_given_up_at_the_timeout(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chunk extension of up to 64 KiB, a byte per 50 ms, read by one ``readline`` inside ``read1``."""
    publish(version(small_model, tmp_path, "v1"), mirror.root)

    def drip_chunk_size(sock: socket.socket) -> None:
        _send(sock, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10;x=")
        for_at_most(15, sock, b"a", 0.05)

    mirror.special["v1/weights.npz"] = drip_chunk_size
    gw = tmp_path / "gw"
    start = time.monotonic()
    assert cli_pull(mirror.url, gw, "--allow-unsigned", "--timeout", "1") == 1
    assert time.monotonic() - start < 5
    assert "weights.npz" in one_line_error(capsys)
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []
