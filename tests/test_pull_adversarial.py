"""Adversarial review of ``spamgate models pull``: a malicious or compromised mirror on 127.0.0.1.

The server here speaks raw bytes (``Mirror``), so it can do what a static web server never does: drip
headers, send an endless chunked trailer, lie about encodings, redirect anywhere. Each test is one
attack and what it meets. Versions are copies of the session's small model (``test_shipping.version``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from spamgate.model.artifact import Artifact
from spamgate.model.signing import generate_keypair, load_private_key
from spamgate.service.cli.main import main
from spamgate.service.lifecycle import ship_index
from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.service.lifecycle.ship_index import INDEX, INDEX_SIGNATURE
from spamgate.service.lifecycle.shipping import publish, pull
from tests.test_shipping import cli_pull, leftovers, one_line_error, version

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


def sends(sock: socket.socket, data: bytes) -> None:
    """A handler's one answer."""
    _send(sock, data)


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


# 2. names: nothing the server says can put a file outside a staging folder, or replace a version


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a\x00b", "a\\b", "..", ".x", "a/b", "x" * 200])
def test_an_index_file_name_that_is_a_path_is_refused_before_any_fetch(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(version(small_model, tmp_path, "v1"), mirror.root)
    doc = json.loads((mirror.root / INDEX).read_bytes())
    doc["versions"]["v1"]["files"][name] = {"size": 1, "sha256": "0" * 64}
    (mirror.root / INDEX).write_text(json.dumps(doc))
    gw = tmp_path / "gw"
    assert cli_pull(mirror.url, gw, "--allow-unsigned") == 1
    assert "invalid file name" in one_line_error(capsys)
    assert mirror.requests == [INDEX] and not gw.exists()


def test_a_manifest_listing_a_path_is_refused_without_a_key(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old-format index (no hashes) and a manifest listing '../../x': the manifest's names are checked."""
    v1 = version(small_model, mirror.root, "v1")
    manifest = json.loads((v1 / "manifest.json").read_text())
    manifest["files"]["../../escaped"] = "0" * 64
    (v1 / "manifest.json").write_text(json.dumps(manifest))
    (mirror.root / INDEX).write_text(json.dumps({"versions": ["v1"]}))
    gw = tmp_path / "gw"
    assert cli_pull(mirror.url, gw, "--allow-unsigned") == 1
    assert "not a list of plain file names" in one_line_error(capsys)
    assert not (tmp_path / "escaped").exists() and not any(r.endswith("escaped") for r in mirror.requests)
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []


def test_a_version_already_here_is_never_fetched_again_nor_replaced(
    tmp_path: Path, small_model: Artifact, mirror: Mirror
) -> None:
    publish(version(small_model, tmp_path, "v1"), mirror.root)
    gw = tmp_path / "gw"
    assert pull(mirror.url, ModelRegistry(gw), allow_unsigned=True).new == ["v1"]
    before = (gw / "v1" / "weights.npz").read_bytes()
    # the mirror now offers other weights under the same name, with a matching index
    (mirror.root / "v1" / "weights.npz").write_bytes(b"other weights")
    doc = json.loads((mirror.root / INDEX).read_bytes())
    doc["versions"]["v1"]["files"]["weights.npz"] = {
        "size": 13,
        "sha256": hashlib.sha256(b"other weights").hexdigest(),
    }
    (mirror.root / INDEX).write_text(json.dumps(doc))
    mirror.requests.clear()
    assert pull(mirror.url, ModelRegistry(gw), allow_unsigned=True).new == []
    assert mirror.requests == [INDEX] and (gw / "v1" / "weights.npz").read_bytes() == before


def test_a_pull_killed_mid_file_leaves_no_version(tmp_path: Path, small_model: Artifact) -> None:
    """SIGKILL while the weights arrive: the staging folder is dot-named, never a version, never active."""
    dist = tmp_path / "dist"
    publish(version(small_model, tmp_path, "v1"), dist)
    gw = tmp_path / "gw"
    script = (
        "import sys, time\n"
        "from spamgate.service.lifecycle import download\n"
        "real = download._stream\n"
        "def stall(source, rel, *a, **k):\n"
        "    out = real(source, rel, *a, **k)\n"
        "    if rel.endswith('weights.npz'):\n"
        "        print('staged', flush=True); time.sleep(60)\n"
        "    return out\n"
        "download._stream = stall\n"
        "from spamgate.service.lifecycle.model_registry import ModelRegistry\n"
        "from spamgate.service.lifecycle.shipping import pull\n"
        f"pull({str(dist)!r}, ModelRegistry({str(gw)!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "staged\n"
    finally:
        proc.kill()
        proc.wait()
    # the staging folder only (an unsigned index's sequence is not remembered: pull_state)
    assert sorted(p.name.split("-")[0] for p in gw.iterdir()) == [".pull"]
    assert ModelRegistry(gw).versions() == [] and ModelRegistry(gw).active() is None
    assert ModelRegistry(gw).invalid_entries() == []
    assert pull(str(dist), ModelRegistry(gw)).new == ["v1"]  # the next pull starts over


# 3. what the server sends instead of the file


def test_a_body_longer_than_the_index_says_without_content_length_stops_at_the_size(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(version(small_model, tmp_path, "v1"), mirror.root)
    stated = (mirror.root / "v1" / "weights.npz").stat().st_size
    sent = []

    def endless_body(sock: socket.socket) -> None:
        _send(sock, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        for _ in range(10_000):  # 640 MB if nobody stops reading
            if not _send(sock, b"%x\r\n%s\r\n" % (len(piece), piece)):
                return
            sent.append(len(piece))

    mirror.special["v1/weights.npz"] = endless_body
    gw = tmp_path / "gw"
    assert cli_pull(mirror.url, gw, "--allow-unsigned") == 1
    assert f"more than the cap of {stated} bytes" in one_line_error(capsys)
    time.sleep(0.2)
    assert sum(sent) < 16 * 1024 * 1024  # what the socket buffers took, not 640 MB
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []


def test_a_gzip_bomb_is_read_as_the_compressed_bytes_it_is(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    """Content-Encoding is never decoded (Accept-Encoding: identity, and urllib does not decode):
    100 MB of zeros in 100 KB of gzip is 100 KB that fail the index's hash."""
    publish(version(small_model, tmp_path, "v1"), mirror.root)
    bomb = gzip.compress(b"\0" * (100 * 1024 * 1024), compresslevel=9)
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    for name in (INDEX, "v1/weights.npz"):
        mirror.special[name] = lambda sock: sends(sock, answer + bomb)
    gw = tmp_path / "gw"
    assert cli_pull(mirror.url, gw, "--allow-unsigned") == 1
    assert "index.json: not valid JSON" in one_line_error(capsys)
    del mirror.special[INDEX]
    assert cli_pull(mirror.url, gw, "--allow-unsigned") == 1
    err = one_line_error(capsys)
    assert "weights.npz" in err and ("over the cap" in err or "sha256" in err), err
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []


def test_an_html_error_page_with_200_is_a_one_line_error(
    tmp_path: Path, small_model: Artifact, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(version(small_model, tmp_path, "v1"), mirror.root)
    page = b"<html><body>502 Bad Gateway</body></html>"
    html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)
    gw = tmp_path / "gw"
    for name, says in ((INDEX, "not valid JSON"), ("v1/manifest.json", "sha256")):
        mirror.special = {name: lambda sock: sends(sock, html)}
        assert cli_pull(mirror.url, gw, "--allow-unsigned") == 1
        assert says in one_line_error(capsys)
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []


def test_an_index_over_1_mib_is_refused_unread(
    tmp_path: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {"format": "spamgate-index/2", "versions": {}, "padding": "x" * (1 << 20)}
    (mirror.root / INDEX).write_text(json.dumps(doc))
    assert cli_pull(mirror.url, tmp_path / "gw", "--allow-unsigned") == 1
    assert "over the cap of 1048576" in one_line_error(capsys)


def redirect(to: str) -> Handler:
    answer = f"HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n".encode()
    return lambda sock: sends(sock, answer)


def test_redirects_loops_and_other_schemes_are_one_line_errors(
    tmp_path: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = tmp_path / "gw"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"format": "spamgate-index/2", "versions": {}}))
    for to, says in (
        (mirror.url + INDEX, "redirect"),  # to itself
        (f"file://{secret}", "redirect"),
        ("ftp://127.0.0.1:9/index.json", "redirected to ftp://127.0.0.1:9/index.json; refused"),
        ("data:,{}", "redirect"),
    ):
        mirror.special = {INDEX: redirect(to)}
        assert cli_pull(mirror.url, gw, "--allow-unsigned", "--timeout", "5") == 1, to
        assert says in one_line_error(capsys).lower(), to
    assert not gw.exists()


def test_a_redirect_to_ftp_is_refused_before_connecting(
    tmp_path: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    """urllib follows http -> ftp; the check of the final URL came after the gateway had connected."""
    connected = threading.Event()

    class Ftp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            connected.set()
            _send(self.request, b"220 ready\r\n")

    ftp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Ftp)
    threading.Thread(target=ftp.serve_forever, daemon=True).start()
    try:
        to = f"ftp://127.0.0.1:{ftp.server_address[1]}/index.json"
        mirror.special = {INDEX: redirect(to)}
        assert cli_pull(mirror.url, tmp_path / "gw", "--allow-unsigned", "--timeout", "5") == 1
        assert f"redirected to {to}; refused" in one_line_error(capsys)
        assert not connected.wait(0.2)
    finally:
        ftp.shutdown()
        ftp.server_close()


# 4. trust: with a key nothing unsigned runs; a failed pull changes nothing that serves


def test_a_signed_index_offering_an_unsigned_version_activates_nothing(
    tmp_path: Path, small_model: Artifact, keys: Keys, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    """The mirror has the publisher's key-signed index for v1, and slips in v2 (unsigned) as current:
    it cannot re-sign the index, so it serves its own unsigned one; either way v1 stays active."""
    priv, pub = keys
    publish(version(small_model, tmp_path, "v1", priv), mirror.root, load_private_key(priv))
    gw = tmp_path / "gw"
    auto = ("--public-key", str(pub), "--activate", "auto")
    assert cli_pull(mirror.url, gw, *auto) == 0 and ModelRegistry(gw).active() == "v1"
    signed_index = (mirror.root / INDEX).read_bytes()
    # an index listing v2 with the right hashes, signed by the mirror's own key
    v2 = version(small_model, mirror.root, "v2")
    doc = json.loads(signed_index)
    doc["versions"]["v2"] = {
        "files": {k: {"size": e.size, "sha256": e.sha256} for k, e in ship_index.folder_entry(v2).items()}
    }
    doc["current"], doc["sequence"] = "v2", doc["sequence"] + 1
    raw = json.dumps(doc).encode()
    other, _ = generate_keypair(tmp_path / "mirror-key")
    (mirror.root / INDEX).write_bytes(raw)
    (mirror.root / INDEX_SIGNATURE).write_bytes(ship_index.sign(raw, load_private_key(other)))
    assert cli_pull(mirror.url, gw, *auto) == 1
    assert "signature does not match" in one_line_error(capsys)
    # and the same index truly signed by the publisher, but v2 itself unsigned: its manifest stops it
    (mirror.root / INDEX_SIGNATURE).write_bytes(ship_index.sign(raw, load_private_key(priv)))
    assert cli_pull(mirror.url, gw, *auto) == 1
    assert f"{mirror.url}v2: unsigned (no signature.ed25519)" in one_line_error(capsys)
    assert "v2/weights.npz" not in mirror.requests
    assert ModelRegistry(gw).active() == "v1" and ModelRegistry(gw).versions() == ["v1"]
    assert leftovers(gw) == []


def test_a_failed_pull_leaves_the_active_version_serving(
    tmp_path: Path, small_model: Artifact, keys: Keys, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = keys
    key = load_private_key(priv)
    publish(version(small_model, tmp_path, "v1", priv), mirror.root, key)
    gw = tmp_path / "gw"
    auto = ("--public-key", str(pub), "--activate", "auto")
    assert cli_pull(mirror.url, gw, *auto) == 0
    active_before = (gw / "ACTIVE").read_bytes()
    publish(version(small_model, tmp_path, "v2", priv), mirror.root, key)
    (mirror.root / "v2" / "weights.npz").write_bytes(b"truncated by the mirror")
    assert cli_pull(mirror.url, gw, *auto) == 1
    assert "sha256" in one_line_error(capsys)
    assert (gw / "ACTIVE").read_bytes() == active_before and ModelRegistry(gw).load("v1").version == "v1"
    assert ModelRegistry(gw).versions() == ["v1"] and leftovers(gw) == []


def test_an_unsigned_pull_cannot_poison_the_state_signed_pulls_keep(
    tmp_path: Path, small_model: Artifact, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pull without --public-key from an untrusted folder saved its sequence (10**100) and withdrawn
    list in PULL_STATE; every signed pull from the publisher was then refused as "older than the last
    accepted here" until the file was deleted."""
    priv, pub = keys
    real, fake = tmp_path / "real", tmp_path / "fake"
    publish(version(small_model, tmp_path, "v1", priv), real, load_private_key(priv))
    publish(version(small_model, tmp_path, "v0"), fake, None)
    doc = json.loads((fake / INDEX).read_bytes())
    doc["sequence"], doc["withdrawn"] = 10**100, ["v1"]
    (fake / INDEX).write_text(json.dumps(doc))
    gw = tmp_path / "gw"
    assert main(["models", "pull", "--from", str(fake), "--registry", str(gw)]) == 0
    capsys.readouterr()
    signed = ["--public-key", str(pub), "--activate", "auto"]
    rc = main(["models", "pull", "--from", str(real), "--registry", str(gw), *signed])
    assert rc == 0, capsys.readouterr()
    assert ModelRegistry(gw).active() == "v1"
