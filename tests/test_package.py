"""What ``pip install .`` puts in site-packages, and whether mypy really checks across our packages.

Issue 17: the distribution put top-level ``model``, ``training`` and ``service`` packages
into site-packages, where any other project's ``model`` collides; and with a global
``ignore_missing_imports`` mypy reported "Success" on a deliberate type error across
packages it could not find.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
PIP = [sys.executable, "-m", "pip"]


def _source_tree(dest: Path) -> Path:
    """The checkout's files as a clean clone has them (tracked or new, not ignored), copied to ``dest``.

    Built in the checkout itself, setuptools reuses ``build/``, where a file deleted or no longer
    listed as package data can linger and make the wheel look complete when a fresh clone's is not.
    Outside a git checkout (an unpacked sdist) the tree is used as it is.
    """
    r = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        timeout=60,
    )
    if r.returncode != 0:
        return ROOT
    for name in sorted({n for n in r.stdout.decode().split("\0") if n}):
        src, dst = ROOT / name, dest / name
        if not src.is_symlink() and not src.exists():
            continue  # deleted but not yet committed
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    tree = _source_tree(tmp_path_factory.mktemp("tree"))
    # --no-build-isolation: setuptools>=77 is a dev dependency, so no network is needed.
    r = subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = out.glob("spamgate-*.whl")
    return path


def test_the_wheel_installs_only_spamgate(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"spamgate"}
    for expected in (
        "spamgate/py.typed",
        "spamgate/model/parse.py",
        "spamgate/training/fit.py",
        "spamgate/service/api/server.py",
        "spamgate/service/api/proto_gen/spamgate_pb2.pyi",
        "spamgate/service/cli/__main__.py",
    ):
        assert expected in names
    # The bundled model in full: a file missing here fails verification at the first `spamgate serve`.
    default = {Path(n).name for n in names if n.startswith("spamgate/model/default/")}
    assert default == {p.name for p in (ROOT / "model" / "default").iterdir() if p.is_file()}
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "spamgate = spamgate.service.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a folder of its own (dependencies from this environment)."""
    target = tmp_path_factory.mktemp("installed") / "site"
    r = subprocess.run(
        [*PIP, "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return target


def _run_installed(target: Path, probe: str, cwd: Path) -> str:
    """``probe`` in a fresh, isolated interpreter that sees only the installed folder; its stdout."""
    r = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_the_installed_wheel_serves_the_bundled_model(installed: Path, tmp_path: Path) -> None:
    """Run from elsewhere, the installed package loads its bundled model."""
    names = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")}
    assert names - {"bin"} == {"spamgate"}
    probe = (
        "import spamgate.model.bundled as b, spamgate.model.artifact as a; "
        "art = a.load_artifact(b.bundled_model_path()); print(art.version, b.__file__)"
    )
    assert str(installed) in _run_installed(installed, probe, tmp_path)


def test_the_installed_wheel_keeps_the_old_stub_import_path(installed: Path, tmp_path: Path) -> None:
    """Clients written before issue 17 (the peers' runner among them) import the stubs by this name.

    The line below is the one ``shared/peers/lib/spamgate_client.py`` runs; it raised ImportError
    after the stubs moved to ``spamgate.service.api.proto_gen``. The old name must give the very
    same modules, or protobuf would see ``spamgate.v1`` registered twice.
    """
    probe = (
        "from spamgate.service.proto_gen import spamgate_pb2 as pb, spamgate_pb2_grpc as pb_grpc; "
        "import spamgate.service.proto_gen.spamgate_pb2 as old; "
        "from spamgate.service.api.proto_gen import spamgate_pb2 as new; "
        "assert pb is old is new and pb_grpc.SpamGateStub; "
        "print(pb.ClassifyRequest(message=b'x').ByteSize())"
    )
    assert _run_installed(installed, probe, tmp_path).strip() == "3"


def test_mypy_catches_a_type_error_across_packages(tmp_path: Path) -> None:
    """mypy as `make test` runs it (the project's config, from the repository) resolves our packages."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from spamgate.model.parse import parse_message\n"
        "from spamgate.service.scoring.verdict import Envelope\n"
        "\n"
        "n: int = parse_message(b'Subject: x\\n\\nbody')\n"
        "e: Envelope = Envelope(rcpt_to=['a@b.example'])\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(CONFIG), str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "import-not-found" not in r.stdout and "import-untyped" not in r.stdout, r.stdout
    assert r.returncode == 1, r.stdout
    assert 'probe.py:4: error: Incompatible types in assignment (expression has type "MessageView"' in (
        r.stdout
    )
    assert 'probe.py:5: error: Argument "rcpt_to" to "Envelope" has incompatible type' in r.stdout
