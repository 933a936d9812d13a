"""Publishing model versions to a distribution point, and pulling them on gateways.

Layout of a distribution point (a folder, or the same files behind any static
HTTP(S) server):

    index.json               {"versions": ["v1", "v2", ...]}  (newest last)
    <version>/manifest.json
    <version>/signature.ed25519
    <version>/<every file the manifest lists>

``pull`` downloads into a temporary folder, verifies every checksum (the
manifest's sha256 list) and the signature, and only then adds the version
to the local registry; nothing half-downloaded is ever visible.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from model.artifact import MANIFEST, ArtifactError, load_artifact
from model.signing import SIGNATURE
from service.model_registry import ModelRegistry

INDEX = "index.json"
_MAX_DOWNLOAD = 512 * 1024 * 1024


class ShippingError(ValueError):
    """A publish or pull that cannot be done (what and why)."""


def publish(version_dir: Path, dest: Path) -> str:
    """Copy a verified version into a distribution folder and list it in index.json."""
    artifact = load_artifact(version_dir)
    version = artifact.version
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / version
    if not target.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=dest))
        for f in Path(version_dir).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        tmp.chmod(0o755)
        os.rename(tmp, target)
    index = _read_local_index(dest)
    if version not in index:
        index.append(version)
    fd, tmp_index = tempfile.mkstemp(prefix=".index-", dir=dest)
    with os.fdopen(fd, "w") as out:
        json.dump({"versions": sorted(index)}, out, indent=1)
    os.chmod(tmp_index, 0o644)
    os.replace(tmp_index, dest / INDEX)
    return version


def _read_local_index(dest: Path) -> list[str]:
    try:
        return list(json.loads((dest / INDEX).read_text())["versions"])
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as exc:
        raise ShippingError(f"{dest / INDEX}: not a valid index: {exc}") from exc


def _fetch(source: str, rel: str) -> bytes:
    if source.startswith(("http://", "https://")):
        url = urllib.parse.urljoin(source.rstrip("/") + "/", rel)
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                data = resp.read(_MAX_DOWNLOAD + 1)
        except OSError as exc:
            raise ShippingError(f"{url}: {exc}") from exc
    else:
        try:
            data = (Path(source) / rel).read_bytes()
        except OSError as exc:
            raise ShippingError(f"{Path(source) / rel}: {exc.strerror}") from exc
    if len(data) > _MAX_DOWNLOAD:
        raise ShippingError(f"{rel}: larger than {_MAX_DOWNLOAD} bytes")
    return data


def remote_versions(source: str) -> list[str]:
    try:
        versions = json.loads(_fetch(source, INDEX))["versions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ShippingError(f"{source}: bad {INDEX}: {exc}") from exc
    if not all(isinstance(v, str) and v and "/" not in v and not v.startswith(".") for v in versions):
        raise ShippingError(f"{source}: {INDEX} holds an invalid version name")
    return list(versions)


def pull(source: str, registry: ModelRegistry) -> list[str]:
    """Fetch every version the source has and the registry lacks; returns the new versions."""
    have = set(registry.versions())
    new = []
    registry.root.mkdir(parents=True, exist_ok=True)
    for version in remote_versions(source):
        if version in have:
            continue
        tmp = Path(tempfile.mkdtemp(prefix=".pull-", dir=registry.root))
        try:
            manifest_bytes = _fetch(source, f"{version}/{MANIFEST}")
            (tmp / MANIFEST).write_bytes(manifest_bytes)
            files = json.loads(manifest_bytes).get("files", {})
            for name in files:
                if Path(name).name != name:
                    raise ShippingError(f"{version}: manifest names a non-plain file {name!r}")
                (tmp / name).write_bytes(_fetch(source, f"{version}/{name}"))
            # Unsigned is allowed here; registry.add refuses it when a public key is configured.
            with contextlib.suppress(ShippingError):
                (tmp / SIGNATURE).write_bytes(_fetch(source, f"{version}/{SIGNATURE}"))
            try:
                added = registry.add(tmp)
            except ArtifactError as exc:
                raise ShippingError(f"{version}: refused: {exc}") from exc
            if added != version:
                raise ShippingError(f"{version}: manifest says version {added!r}")
            new.append(version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return new
