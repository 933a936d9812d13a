"""Issue 16, "no stranger can plant a model": publish/pull through a signed index, strict names, a loader
that refuses dotfiles and symlinks. Each test is one of the attacks tried, and what it now meets.

Versions are copies of the session's small model with another ``version`` in the manifest (the manifest's
checksums cover the weights, not itself), so no test trains.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spamgate.model.artifact import Artifact, ArtifactError, load_artifact
from spamgate.model.signing import generate_keypair, load_private_key, load_public_key, sign_artifact
from spamgate.service.api.launch import serve_command
from spamgate.service.cli.main import main
from spamgate.service.lifecycle import ship_index
from spamgate.service.lifecycle.model_registry import ModelRegistry, RegistryError
from spamgate.service.lifecycle.ship_index import INDEX, INDEX_SIGNATURE, Index
from spamgate.service.lifecycle.shipping import DEFAULT_MIN_RATE, ShippingError, publish, pull, withdraw

REPO = Path(__file__).resolve().parents[1]
Keys = tuple[Path, Path]  # (private key file, public key file)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return generate_keypair(tmp_path_factory.mktemp("keys") / "signing")


def version(small_model: Artifact, where: Path, name: str, key: Path | None = None) -> Path:
    """A copy of the small model named ``name`` (manifest version included), signed with ``key``."""
    assert small_model.path is not None
    shutil.copytree(small_model.path, where / name)
    manifest = json.loads((where / name / "manifest.json").read_text())
    manifest["version"] = name
    (where / name / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (where / name / "signature.ed25519").unlink(missing_ok=True)
    if key is not None:
        sign_artifact(where / name, load_private_key(key))
    return where / name


def publish_signed(
    small_model: Artifact, src: Path, priv: Path, to: Path, *names: str, make_current: bool = True
) -> None:
    """Make each of ``names`` in ``src`` (created if need be) signed with ``priv``; publish it to ``to``."""
    src.mkdir(exist_ok=True)
    for name in names:
        publish(version(small_model, src, name, priv), to, load_private_key(priv), make_current=make_current)


def leftovers(root: Path) -> list[str]:
    """Staging folders a pull left in a registry (there must never be any)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.is_dir() else []


@dataclass
class Www:
    """A static HTTP server on 127.0.0.1 over ``root``; ``requests`` logs every path asked for.

    Files named in ``slow`` (relative to ``root``) are sent a byte every 50 ms: a server dripping bytes.
    """

    root: Path
    url: str
    requests: list[str] = field(default_factory=list)
    slow: set[str] = field(default_factory=set)


@pytest.fixture()
def www(tmp_path: Path) -> Iterator[Www]:
    root = tmp_path / "www"
    (root / "dist").mkdir(parents=True)
    site = Www(root / "dist", "")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(root), **k)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            site.requests.append(self.path)
            if self.path.removeprefix("/dist/") not in site.slow:
                # A client that leaves mid-file (a pull refusing it) made socketserver print a traceback.
                with contextlib.suppress(ConnectionError):
                    super().do_GET()
                return
            body = (root / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for byte in body[:200]:  # bounded: at most 10 s, and over as soon as the client leaves
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    site.url = f"http://127.0.0.1:{httpd.server_address[1]}/dist/"
    yield site
    httpd.shutdown()
    httpd.server_close()


def cli_pull(source: str, registry: Path, *extra: str) -> int:
    return main(["models", "pull", "--from", source, "--registry", str(registry), *extra])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# 1. a signed index, checked before anything else; sizes and hashes from it; all or nothing


def test_publish_writes_a_signed_index_with_sizes_hashes_and_current(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www
) -> None:
    priv, pub = keys
    v1 = version(small_model, tmp_path, "v1")  # unsigned: publishing with the key signs the copy
    assert publish(v1, www.root, load_private_key(priv)) == "v1"
    raw = (www.root / INDEX).read_bytes()
    doc = json.loads(raw)
    assert doc["format"] == "spamgate-index/2" and doc["current"] == "v1" and doc["withdrawn"] == []
    files = doc["versions"]["v1"]["files"]
    listed = json.loads((www.root / "v1" / "manifest.json").read_text())["files"]
    assert "weights.npz" in listed and set(files) == {*listed, "manifest.json", "signature.ed25519"}
    assert files["weights.npz"]["size"] == (www.root / "v1" / "weights.npz").stat().st_size
    manifest_bytes = (www.root / "v1" / "manifest.json").read_bytes()
    assert files["manifest.json"]["sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    ship_index.verify(raw, (www.root / INDEX_SIGNATURE).read_bytes(), load_public_key(pub), "test")

    gw = tmp_path / "gw"
    result = pull(www.url, ModelRegistry(gw), load_public_key(pub))
    assert result.new == ["v1"] and result.current == "v1" and result.signed
    assert ModelRegistry(gw).versions() == ["v1"] and leftovers(gw) == []
    assert www.requests[:2] == ["/dist/index.json", "/dist/index.json.ed25519"]


def test_a_forged_index_is_refused_after_two_small_reads(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = keys
    publish_signed(small_model, tmp_path, priv, www.root, "v1")
    # the stranger adds eight 60 MB versions (sparse files: no disk) and rewrites the index
    doc = json.loads((www.root / INDEX).read_bytes())
    for i in range(8):
        folder = www.root / f"evil{i}"
        shutil.copytree(www.root / "v1", folder)
        with open(folder / "weights.npz", "r+b") as f:
            f.truncate(60 * 1024 * 1024)
        doc["versions"][f"evil{i}"] = {"files": {k: v for k, v in doc["versions"]["v1"]["files"].items()}}
        doc["versions"][f"evil{i}"]["files"]["weights.npz"]["size"] = 60 * 1024 * 1024
    doc["current"] = "evil7"
    (www.root / INDEX).write_text(json.dumps(doc))
    gw = tmp_path / "gw"
    assert cli_pull(www.url, gw, "--public-key", str(pub), "--activate", "auto") == 1
    assert "signature does not match" in one_line_error(capsys)
    assert www.requests == ["/dist/index.json", "/dist/index.json.ed25519"]  # nothing else fetched
    assert not gw.exists() or (ModelRegistry(gw).versions() == [] and leftovers(gw) == [])
    # signed by another key: the same
    other, _ = generate_keypair(tmp_path / "other")
    (www.root / INDEX_SIGNATURE).write_bytes(
        ship_index.sign((www.root / INDEX).read_bytes(), load_private_key(other))
    )
    with pytest.raises(ShippingError, match="signature does not match"):
        pull(www.url, ModelRegistry(gw), load_public_key(pub))


def test_the_total_is_capped_before_any_version_file_is_fetched(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = keys
    publish_signed(small_model, tmp_path, priv, www.root, "v1", "v2")
    weights = (www.root / "v1" / "weights.npz").stat().st_size
    gw = tmp_path / "gw"
    assert cli_pull(www.url, gw, "--public-key", str(pub), "--max-bytes", str(weights + 100)) == 1
    assert "over the limit" in one_line_error(capsys)
    assert all(r.startswith("/dist/index.json") for r in www.requests), www.requests
    assert not gw.exists() or ModelRegistry(gw).versions() == []
    assert cli_pull(www.url, gw, "--public-key", str(pub)) == 0  # the default cap (512 MiB) lets it through
    assert ModelRegistry(gw).versions() == ["v1", "v2"]


def test_a_file_longer_than_the_index_says_is_abandoned_at_its_size(
    tmp_path: Path, small_model: Artifact, www: Www
) -> None:
    publish(version(small_model, tmp_path, "v1"), www.root)
    weights = www.root / "v1" / "weights.npz"
    stated = weights.stat().st_size
    with open(weights, "ab") as f:  # the server now sends 100 MB more than the index states
        f.truncate(stated + 100 * 1024 * 1024)
    gw = tmp_path / "gw"
    with pytest.raises(ShippingError, match=f"over the cap of {stated}"):
        pull(www.url, ModelRegistry(gw), allow_unsigned=True)
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []
    # the same from a folder (the read is streamed and capped there too)
    with pytest.raises(ShippingError, match=f"over the cap of {stated}"):
        pull(str(www.root), ModelRegistry(gw))
    assert leftovers(gw) == []


def test_the_artifact_signature_is_checked_before_its_weights_are_fetched(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www
) -> None:
    """The publisher signs the index but the version carries another key's signature: no weights read."""
    priv, pub = keys
    other, _ = generate_keypair(tmp_path / "other")
    folder = version(small_model, www.root, "v1", other)
    entries: dict[str, dict[str, ship_index.FileEntry] | None] = {"v1": ship_index.folder_entry(folder)}
    raw = ship_index.dumps(Index(entries, "v1", sequence=1, expires=ship_index.expiry(1)))
    (www.root / INDEX).write_bytes(raw)
    (www.root / INDEX_SIGNATURE).write_bytes(ship_index.sign(raw, load_private_key(priv)))
    gw = tmp_path / "gw"
    with pytest.raises(ShippingError, match="signature does not match the manifest"):
        pull(www.url, ModelRegistry(gw), load_public_key(pub))
    assert "/dist/v1/manifest.json" in www.requests and "/dist/v1/weights.npz" not in www.requests
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []


def test_a_pull_is_all_or_nothing(tmp_path: Path, small_model: Artifact, www: Www) -> None:
    for name in ("v1", "v2"):
        publish(version(small_model, tmp_path, name), www.root)
    (www.root / "v2" / "weights.npz").write_bytes(b"not the weights the index lists")
    gw = tmp_path / "gw"
    with pytest.raises(ShippingError, match="sha256"):
        pull(str(www.root), ModelRegistry(gw))
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []  # v1 was fine, and is not kept either


# 2. version names


@pytest.mark.parametrize(
    "name", ["ACTIVE", "active", "HISTORY", "..", "a..b", ".hidden", "a/b", "", "x" * 129, "ü", "a b"]
)
def test_an_index_naming_an_invalid_version_is_refused_and_nothing_written(
    tmp_path: Path, small_model: Artifact, name: str
) -> None:
    dist = tmp_path / "dist"
    publish(version(small_model, tmp_path, "v1"), dist)
    doc = json.loads((dist / INDEX).read_bytes())
    doc["versions"][name] = doc["versions"]["v1"]
    if name not in ("", "..") and "/" not in name:  # the stranger serves the folder too
        entry = ship_index.folder_entry(version(small_model, dist, name))
        doc["versions"][name] = {"files": {n: {"size": e.size, "sha256": e.sha256} for n, e in entry.items()}}
    (dist / INDEX).write_text(json.dumps(doc))
    gw = tmp_path / "gw"
    with pytest.raises(ShippingError, match="invalid version name"):
        pull(str(dist), ModelRegistry(gw))
    assert not gw.exists() or sorted(p.name for p in gw.iterdir()) == []


def test_the_registry_refuses_and_ignores_invalid_names(
    tmp_path: Path, small_model: Artifact, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    (tmp_path / "src").mkdir()
    reg.add(version(small_model, tmp_path / "src", "v1"))
    for bad in ("ACTIVE", "HISTORY", "..", "../v1", ".v1", "v1/../v1"):
        with pytest.raises(RegistryError, match="invalid version name"):
            reg.activate(bad)
    (tmp_path / "src2").mkdir()
    with pytest.raises(RegistryError, match="invalid version name"):
        reg.add(version(small_model, tmp_path / "src2", "ACTIVE"))
    # a registry where an earlier release planted a version folder named ACTIVE, and junk beside it
    shutil.copytree(reg.path("v1"), reg.root / "ACTIVE")
    (reg.root / "bad name").mkdir()
    assert reg.versions() == ["v1"] and reg.active() is None
    assert main(["models", "list", "--registry", str(reg.root)]) == 0
    out = capsys.readouterr().out
    assert "  v1  " in out and "! ACTIVE  invalid" in out and "! bad name  invalid" in out
    assert main(["models", "activate", "--registry", str(reg.root), "v1"]) == 2
    assert "ACTIVE is not a plain file" in one_line_error(capsys)
    shutil.rmtree(reg.root / "ACTIVE")
    assert main(["models", "activate", "--registry", str(reg.root), "v1"]) == 0
    (reg.root / "ACTIVE").write_text("../../etc\n")  # a pointer naming no valid version: nothing active
    assert reg.active() is None
    assert main(["models", "show", "--registry", str(reg.root), "ACTIVE"]) == 2
    assert "invalid version name" in one_line_error(capsys)


def test_serve_on_a_registry_with_a_planted_active_folder_is_a_configuration_error(
    tmp_path: Path, small_model: Artifact
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    (tmp_path / "src").mkdir()
    reg.add(version(small_model, tmp_path / "src", "v1"))
    shutil.copytree(reg.path("v1"), reg.root / "ACTIVE")
    config = tmp_path / "spamgate.toml"
    config.write_text(f'[model]\nregistry = "{reg.root}"\n')
    r = subprocess.run(
        serve_command(["--config", str(config)]), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 78 and "Traceback" not in r.stderr, r.stderr
    assert "no ACTIVE version" in r.stderr


# 3. the manifest's version must be the index's name


def test_a_version_whose_manifest_names_another_is_refused_and_not_planted(
    tmp_path: Path, small_model: Artifact, www: Www
) -> None:
    shutil.copytree(version(small_model, tmp_path, "v2"), www.root / "v1")  # folder v1, manifest says v2
    (www.root / INDEX).write_bytes(
        ship_index.dumps(Index({"v1": ship_index.folder_entry(www.root / "v1")}, "v1"))
    )
    gw = tmp_path / "gw"
    with pytest.raises(ShippingError, match="manifest says version 'v2'"):
        pull(www.url, ModelRegistry(gw), allow_unsigned=True)
    assert "/dist/v1/weights.npz" not in www.requests  # refused on the manifest alone
    assert not gw.exists() or sorted(p.name for p in gw.iterdir()) == []  # neither v1 nor v2 planted
    # a folder renamed by hand in a registry is refused on activation
    reg = ModelRegistry(tmp_path / "models")
    reg.root.mkdir()
    shutil.copytree(www.root / "v1", reg.root / "v1")
    with pytest.raises(RegistryError, match="manifest says version 'v2'"):
        reg.activate("v1")
    assert reg.active() is None


# 4. malformed JSON


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'{"format": "spamgate-index/2", "versions": []}', b"\xff"]
)
def test_a_malformed_index_is_a_one_line_error(
    tmp_path: Path, small_model: Artifact, body: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / INDEX).write_bytes(body)
    assert cli_pull(str(tmp_path / "dist"), tmp_path / "gw") == 1
    assert "index.json" in one_line_error(capsys)
    (tmp_path / "models").mkdir()
    version(small_model, tmp_path / "models", "v1")
    assert (
        main(
            [
                "models",
                "publish",
                "--registry",
                str(tmp_path / "models"),
                "v1",
                "--to",
                str(tmp_path / "dist"),
            ]
        )
        == 2
    )
    assert "index.json" in one_line_error(capsys)


def test_a_malformed_manifest_is_a_one_line_error(
    tmp_path: Path, small_model: Artifact, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = tmp_path / "dist"
    publish(version(small_model, tmp_path, "v1"), dist)
    (dist / "v1" / "manifest.json").write_text("{broken")
    (dist / INDEX).write_bytes(ship_index.dumps(Index({"v1": ship_index.folder_entry(dist / "v1")}, "v1")))
    assert cli_pull(str(dist), tmp_path / "gw") == 1
    assert "manifest.json: not valid JSON" in one_line_error(capsys)
    # in a registry: list shows it as invalid, show and activate say why
    reg = tmp_path / "models"
    reg.mkdir()
    shutil.copytree(dist / "v1", reg / "v1")
    assert main(["models", "list", "--registry", str(reg)]) == 0
    assert "! v1  invalid" in capsys.readouterr().out
    assert main(["models", "show", "--registry", str(reg), "v1"]) == 2
    assert "unreadable manifest" in one_line_error(capsys)
    assert main(["models", "activate", "--registry", str(reg), "v1"]) == 2
    assert "unreadable manifest" in one_line_error(capsys)


# 5. without a key: no plain http unless said so, never activated automatically


def test_without_a_key_plain_http_needs_allow_unsigned_and_nothing_is_activated(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(version(small_model, tmp_path, "v1"), www.root)
    gw = tmp_path / "gw"
    assert cli_pull(www.url, gw) == 78
    assert "--allow-unsigned" in one_line_error(capsys) and www.requests == []
    assert cli_pull(www.url, gw, "--allow-unsigned", "--activate", "auto") == 78
    assert "never activated automatically" in one_line_error(capsys) and www.requests == []
    assert cli_pull(www.url, gw, "--allow-unsigned", "--public-key", str(keys[1])) == 78
    assert "exclude each other" in one_line_error(capsys)
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("not a key\n")
    assert cli_pull(www.url, gw, "--public-key", str(bad_key)) == 78
    assert "--public-key" in one_line_error(capsys)
    assert cli_pull(www.url, gw, "--public-key", str(tmp_path / "missing.pub")) == 78
    assert "No such file" in one_line_error(capsys)
    assert www.requests == [] and not gw.exists()
    assert cli_pull(www.url, gw, "--allow-unsigned") == 0
    assert "UNSIGNED" in capsys.readouterr().out
    assert ModelRegistry(gw).versions() == ["v1"] and ModelRegistry(gw).active() is None
    # the API refuses the same
    with pytest.raises(ShippingError, match="plain http"):
        pull(www.url, ModelRegistry(tmp_path / "gw2"))


def test_an_old_format_index_needs_allow_unsigned_and_no_key(
    tmp_path: Path, small_model: Artifact, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copytree(version(small_model, tmp_path, "v1", keys[0]), dist / "v1")
    (dist / INDEX).write_text(json.dumps({"versions": ["v1"]}))  # what earlier releases wrote
    gw = tmp_path / "gw"
    assert cli_pull(str(dist), gw) == 1
    assert "old-format index" in one_line_error(capsys)
    assert cli_pull(str(dist), gw, "--public-key", str(keys[1])) == 1
    assert "old-format index" in one_line_error(capsys)
    assert cli_pull(str(dist), gw, "--allow-unsigned") == 0
    assert ModelRegistry(gw).versions() == ["v1"] and ModelRegistry(gw).active() is None
    # and publishing into it upgrades the index; an earlier release's pull still reads the names
    publish(version(small_model, tmp_path, "v2"), dist)
    assert list(json.loads((dist / INDEX).read_text())["versions"]) == ["v1", "v2"]


# 6. --activate auto follows the publisher's current; a recall is a withdraw


def test_auto_activates_the_current_version_and_a_publisher_can_recall(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = keys
    key = load_private_key(priv)
    src = tmp_path / "src"
    publish_signed(small_model, src, priv, www.root, "v1", "v2")
    publish_signed(small_model, src, priv, www.root, "v3", make_current=False)  # offered, not current
    gw = tmp_path / "gw"
    auto = ("--public-key", str(pub), "--activate", "auto")
    assert cli_pull(www.url, gw, *auto) == 0
    assert ModelRegistry(gw).active() == "v2"  # the current one, not the newest name (v3)
    # v2 turns out bad: the publisher withdraws it; current falls back to v1 (named here)
    assert (
        main(["models", "withdraw", "v2", "--to", str(www.root), "--key", str(priv), "--current", "v1"]) == 0
    )
    assert "current: v1" in capsys.readouterr().out
    assert cli_pull(www.url, gw, *auto) == 0
    out = capsys.readouterr().out
    assert ModelRegistry(gw).active() == "v1" and "warning: v2 is withdrawn by the publisher" in out
    # a fresh gateway never fetches the withdrawn version
    fresh = tmp_path / "fresh"
    assert cli_pull(www.url, fresh, *auto) == 0
    assert ModelRegistry(fresh).versions() == ["v1", "v3"] and ModelRegistry(fresh).active() == "v1"
    # publishing v3 (again) makes it current
    assert (
        main(["models", "publish", "--registry", str(src), "v3", "--to", str(www.root), "--key", str(priv)])
        == 0
    )
    assert cli_pull(www.url, gw, *auto) == 0 and ModelRegistry(gw).active() == "v3"
    # withdrawing the current version without naming another falls back to the newest still offered
    assert withdraw(www.root, "v3", key).current == "v1"
    assert cli_pull(www.url, gw, *auto) == 0 and ModelRegistry(gw).active() == "v1"
    # without the key the signed index is not rewritten (its signature would go stale)
    with pytest.raises(ShippingError, match="is signed"):
        withdraw(www.root, "v3")
    assert main(["models", "withdraw", "v3", "--to", str(www.root), "--key", str(tmp_path / "nokey")]) == 78


# 7. the loader refuses dotfiles, symlinks and unlisted files


@pytest.mark.parametrize("plant", ["dotfile", "symlink", "symlinked-weights", "unlisted", "folder"])
def test_the_loader_and_registry_refuse_a_folder_with_extras(
    tmp_path: Path, small_model: Artifact, plant: str
) -> None:
    folder = version(small_model, tmp_path, "v1")
    load_artifact(folder)
    if plant == "dotfile":
        (folder / ".weights.npz").write_bytes(b"x")
        why = "hidden files"
    elif plant == "symlink":
        (folder / "extra").symlink_to("/etc/passwd")
        why = "symlinks"
    elif plant == "symlinked-weights":
        os.replace(folder / "weights.npz", tmp_path / "weights.npz")
        (folder / "weights.npz").symlink_to(tmp_path / "weights.npz")
        why = "symlinks"
    elif plant == "unlisted":
        (folder / "notes.txt").write_text("hi")
        why = "not listed"
    else:
        (folder / "sub").mkdir()
        why = "not listed"
    with pytest.raises(ArtifactError, match=why):
        load_artifact(folder)
    reg = ModelRegistry(tmp_path / "models")
    with pytest.raises(ArtifactError, match=why):
        reg.add(folder)
    reg.root.mkdir(exist_ok=True)
    os.rename(folder, reg.root / "v1")  # planted in the registry directly
    with pytest.raises(RegistryError, match=why):
        reg.activate("v1")
    assert reg.active() is None


# 8. a manifest edited after publishing


def test_a_manifest_edited_after_publishing_is_caught_without_a_key(
    tmp_path: Path, small_model: Artifact, keys: Keys
) -> None:
    dist = tmp_path / "dist"
    folder = version(small_model, tmp_path, "v1")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (
        manifest["files"]["weights.npz"] == hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()
    )
    publish(folder, dist)
    edited = dist / "v1" / "manifest.json"
    m = json.loads(edited.read_text())
    m["operating_points"] = []  # e.g. thresholds moved
    edited.write_text(json.dumps(m, indent=2))
    gw = tmp_path / "gw"
    with pytest.raises(ShippingError, match="the index says"):
        pull(str(dist), ModelRegistry(gw))
    assert not gw.exists() or ModelRegistry(gw).versions() == []
    # with a key, rewriting the index to match is caught by the index's signature
    signed = tmp_path / "signed"
    (tmp_path / "s").mkdir()
    publish(version(small_model, tmp_path / "s", "v1", keys[0]), signed, load_private_key(keys[0]))
    m = json.loads((signed / "v1" / "manifest.json").read_text())
    m["operating_points"] = []
    (signed / "v1" / "manifest.json").write_text(json.dumps(m))
    doc = json.loads((signed / INDEX).read_text())
    doc["versions"]["v1"] = {
        "files": {
            n: {"size": e.size, "sha256": e.sha256} for n, e in ship_index.folder_entry(signed / "v1").items()
        }
    }
    (signed / INDEX).write_text(json.dumps(doc))
    with pytest.raises(ShippingError, match="signature does not match"):
        pull(str(signed), ModelRegistry(gw), load_public_key(keys[1]))


# 9. a server dripping bytes cannot hold a pull forever


def pull_is_abandoned(
    www: Www, gw: Path, match: str, timeout: float, min_rate: int = DEFAULT_MIN_RATE
) -> None:
    """An unsigned pull from ``www`` fails with ``match`` in 5 s, not at the server's pace; nothing kept."""
    start = time.monotonic()
    with pytest.raises(ShippingError, match=match):
        pull(www.url, ModelRegistry(gw), allow_unsigned=True, timeout=timeout, min_rate=min_rate)
    assert time.monotonic() - start < 5
    assert ModelRegistry(gw).versions() == [] and leftovers(gw) == []


def test_a_dripping_server_is_given_up_at_the_pulls_timeout(
    tmp_path: Path, small_model: Artifact, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(version(small_model, tmp_path, "v1"), www.root)
    www.slow = {"v1/weights.npz"}  # 1 byte per 50 ms: every read answered well within 30 s
    gw = tmp_path / "gw"
    pull_is_abandoned(www, gw, "not done by the pull's --timeout of 1 s; abandoned", timeout=1.0)
    # the command line: one line, exit 1; a silent index read (headers, no body) is bounded the same way
    www.slow = {"index.json"}
    start = time.monotonic()
    assert cli_pull(www.url, gw, "--allow-unsigned", "--timeout", "0.5") == 1
    assert "index.json" in one_line_error(capsys) and time.monotonic() - start < 5
    with pytest.raises(SystemExit):  # argparse's usage error
        main(["models", "pull", "--from", www.url, "--registry", str(gw), "--timeout", "0"])
    assert "not a positive number of seconds: '0'" in capsys.readouterr().err


def test_a_file_slower_than_the_minimum_rate_is_given_up_before_the_timeout(
    tmp_path: Path, small_model: Artifact, www: Www, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spamgate.service.lifecycle import shipping

    monkeypatch.setattr(shipping, "GRACE_SECONDS", 0.5)
    publish(version(small_model, tmp_path, "v1"), www.root)
    www.slow = {"v1/manifest.json"}
    match = "not done by its deadline at --min-rate 1048576 bytes/s"
    pull_is_abandoned(www, tmp_path / "gw", match, timeout=60, min_rate=1 << 20)


# 10. an old signed index cannot be replayed: sequence, expiry, and withdrawals remembered


def test_a_replayed_old_index_cannot_bring_back_a_withdrawn_version(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's steps: publish v1, v2 (keep that index), withdraw v2, pull, replay the old index."""
    priv, pub = keys
    publish_signed(small_model, tmp_path / "src", priv, www.root, "v1", "v2")
    old_index, old_signature = (www.root / INDEX).read_bytes(), (www.root / INDEX_SIGNATURE).read_bytes()
    assert main(["models", "withdraw", "v2", "--to", str(www.root), "--key", str(priv)]) == 0
    gw = tmp_path / "gw"
    auto = ("--public-key", str(pub), "--activate", "auto")
    assert cli_pull(www.url, gw, *auto) == 0 and ModelRegistry(gw).active() == "v1"
    assert cli_pull(www.url, gw, *auto) == 0  # the same index again: fine
    capsys.readouterr()
    # a mirror serves the saved index (signed by the publisher's key, v2 current) and v2's files
    mirror = www.root.parent / "mirror"
    shutil.copytree(www.root, mirror)
    (mirror / INDEX).write_bytes(old_index)
    (mirror / INDEX_SIGNATURE).write_bytes(old_signature)
    mirror_url = www.url.replace("/dist/", "/mirror/")
    assert cli_pull(mirror_url, gw, *auto) == 1
    assert "sequence 2 is older than the last accepted here (3)" in one_line_error(capsys)
    assert ModelRegistry(gw).active() == "v1" and ModelRegistry(gw).versions() == ["v1"]
    # the registry's state file is its own, never a version
    assert ModelRegistry(gw).invalid_entries() == [] and "PULL_STATE" not in ModelRegistry(gw).versions()
    with pytest.raises(RegistryError, match="reserved"):
        ModelRegistry(gw).activate("PULL_STATE")


def test_a_version_once_seen_withdrawn_is_never_activated_by_a_pull(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = keys
    key = load_private_key(priv)
    publish_signed(small_model, tmp_path / "src", priv, www.root, "v1", "v2")
    gw = tmp_path / "gw"
    auto = ("--public-key", str(pub), "--activate", "auto")
    assert cli_pull(www.url, gw, *auto) == 0 and ModelRegistry(gw).active() == "v2"
    withdraw(www.root, "v2", key)
    assert cli_pull(www.url, gw, *auto) == 0 and ModelRegistry(gw).active() == "v1"
    capsys.readouterr()
    # a newer index naming v2 current again (published anew, or a signing host that missed the recall)
    publish(www.root / "v2", www.root, key)
    assert cli_pull(www.url, gw, *auto) == 1
    err = one_line_error(capsys)
    assert "v2 was withdrawn by the publisher" in err and "never activated by a pull" in err
    assert ModelRegistry(gw).active() == "v1"
    assert main(["models", "activate", "--registry", str(gw), "v2"]) == 0  # by hand, deliberately: allowed


def test_expired_and_unsequenced_signed_indexes_are_refused(
    tmp_path: Path, small_model: Artifact, keys: Keys, www: Www, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = keys
    reg = tmp_path / "src"
    reg.mkdir()
    version(small_model, reg, "v1", priv)
    # --valid-days sets the expiry; every publish or withdraw counts the sequence up
    publish_cli = [
        "models",
        "publish",
        "--registry",
        str(reg),
        "v1",
        "--to",
        str(www.root),
        "--key",
        str(priv),
    ]
    assert main([*publish_cli, "--valid-days", "2"]) == 0
    doc = json.loads((www.root / INDEX).read_bytes())
    published, expires = (datetime.fromisoformat(doc[k]) for k in ("published", "expires"))
    # Both are read from the clock to the second, a moment apart: one second either way.
    assert doc["sequence"] == 1 and abs(expires - published - timedelta(days=2)) <= timedelta(seconds=1)
    assert main([*publish_cli, "--not-current"]) == 0
    doc = json.loads((www.root / INDEX).read_bytes())
    assert doc["sequence"] == 2
    assert datetime.fromisoformat(doc["expires"]) - datetime.fromisoformat(doc["published"]) == timedelta(30)
    assert main([*publish_cli, "--valid-days", "0"]) != 0
    capsys.readouterr()
    entries: dict[str, dict[str, ship_index.FileEntry] | None] = {
        "v1": ship_index.folder_entry(www.root / "v1")
    }
    key = load_private_key(priv)

    def serve(index: Index) -> None:
        raw = ship_index.dumps(index)
        (www.root / INDEX).write_bytes(raw)
        (www.root / INDEX_SIGNATURE).write_bytes(ship_index.sign(raw, key))

    gw = tmp_path / "gw"
    serve(Index(entries, "v1", sequence=7, expires=datetime.now(UTC) - timedelta(minutes=1)))
    with pytest.raises(ShippingError, match="expired at"):
        pull(www.url, ModelRegistry(gw), load_public_key(pub))
    serve(Index(entries, "v1"))  # signed, but as an earlier release wrote it: replayable
    with pytest.raises(ShippingError, match="no sequence number and expiry"):
        pull(www.url, ModelRegistry(gw), load_public_key(pub))
    assert not gw.exists() or ModelRegistry(gw).versions() == []
    serve(Index(entries, "v1", sequence=7, expires=datetime.now(UTC) + timedelta(days=1)))
    assert pull(www.url, ModelRegistry(gw), load_public_key(pub)).new == ["v1"]
    # malformed fields are a one-line error
    good = (www.root / INDEX).read_bytes()
    for field_, bad in (
        ("sequence", "7"),
        ("sequence", -1),
        ("expires", "tomorrow"),
        ("expires", "2030-01-01"),
    ):
        doc = json.loads(good)
        doc[field_] = bad
        raw = json.dumps(doc).encode()
        (www.root / INDEX).write_bytes(raw)
        (www.root / INDEX_SIGNATURE).write_bytes(ship_index.sign(raw, key))
        assert cli_pull(www.url, gw, "--public-key", str(pub)) == 1
        assert f"'{field_}'" in one_line_error(capsys)
    # a state file that is not ours: fail closed, one line
    (gw / "PULL_STATE").write_text("{broken")
    serve(Index(entries, "v1", sequence=7, expires=datetime.now(UTC) + timedelta(days=1)))
    assert cli_pull(www.url, gw, "--public-key", str(pub)) == 1
    assert "PULL_STATE" in one_line_error(capsys)
