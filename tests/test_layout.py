"""The package layout's rules, enforced by walking every import (issue 17).

- Everything installs under one top-level name: code imports ``spamgate.model``,
  ``spamgate.training``, ``spamgate.service``, never the bare folder names (they
  would load a second copy of a module, with its own exception classes).
- Protobuf types appear only in ``service/api/`` (the gRPC edge and the one
  converter, ``proto_convert``, which the MTA hooks call on the client's answer) and
  the public surface in ``spamgate/__init__.py``; everything behind works on plain types.
- ``training`` is imported by the service's CLI only; ``model`` (the shared core)
  imports neither ``training`` nor ``service``.
- No two modules share a name (``registry`` beside ``model_registry``, two ``metrics``).
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "spamgate"
OUR_FOLDERS = ("model", "training", "service")


def _package_modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, file) for every module of the installed package, through spamgate/'s links."""
    for path in sorted(PACKAGE.rglob("*.py")):  # rglob does not enter linked folders: walk them
        yield _dotted(path), path
    for folder in OUR_FOLDERS:
        base = PACKAGE / folder
        for path in sorted(base.resolve().rglob("*.py")):
            rel = path.relative_to(base.resolve())
            if "proto_gen" in rel.parts:
                continue
            yield _dotted(base / rel), path


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(source: str, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement in ``source`` names (relative ones resolved)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            yield prefix
            yield from (f"{prefix}.{a.name}" for a in node.names)


def _package_imports() -> list[tuple[str, str]]:
    pairs = []
    for module, path in _package_modules():
        for name in _imports(path.read_text(), module, path.name == "__init__.py"):
            pairs.append((module, name))
    return pairs


def _repo_sources() -> Iterator[tuple[str, str]]:
    """(where, source) for the package, tests, bench scripts and the notebooks' code cells."""
    for module, path in _package_modules():
        yield module, path.read_text()
    for folder in ("tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "code":
                code = "".join(cell["source"])
                magic = ("%", "!")  # IPython lines are not Python
                code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(magic))
                yield f"{nb.name}[{i}]", code


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_walk_sees_the_whole_package() -> None:
    modules = {m for m, _ in _package_modules()}
    # One module from each part of the flow: a walk that silently found nothing would pass every rule.
    for expected in (
        "spamgate.model.parse",
        "spamgate.training.fit",
        "spamgate.service.api.server",
        "spamgate.service.scoring.engine",
        "spamgate.service.policy.settings",
        "spamgate.service.lifecycle.model_registry",
        "spamgate.service.mta.milter",
        "spamgate.service.cli.main",
        "spamgate.service.runtime.config",
    ):
        assert expected in modules
    assert len(_package_imports()) > 300


def test_nothing_imports_the_bare_folder_names() -> None:
    offenders = []
    for where, source in _repo_sources():
        for name in _imports(source, "", False):
            if name.split(".")[0] in OUR_FOLDERS:
                offenders.append(f"{where}: {name}")
    assert not offenders, "import spamgate.<folder>…, not the folder:\n" + "\n".join(sorted(set(offenders)))


def test_protobuf_only_at_the_grpc_edge() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, name in _package_imports()
        if (_within(name, "spamgate.service.api.proto_gen") or _within(name, "google.protobuf"))
        and not _within(module, "spamgate.service.api")
        and module != "spamgate"  # the public surface names the wire types for gateway code
    ]
    assert not offenders, "\n".join(offenders)


def test_training_is_imported_by_the_cli_only() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, name in _package_imports()
        if _within(name, "spamgate.training")
        and not _within(module, "spamgate.training")
        and not _within(module, "spamgate.service.cli")
    ]
    assert not offenders, "\n".join(offenders)


def test_the_shared_core_imports_neither_training_nor_service() -> None:
    offenders = [
        f"{module} imports {name}"
        for module, name in _package_imports()
        if _within(module, "spamgate.model")
        and (_within(name, "spamgate.training") or _within(name, "spamgate.service"))
    ]
    assert not offenders, "\n".join(offenders)


def test_no_two_modules_share_a_name() -> None:
    names = Counter(
        m.rsplit(".", 1)[-1] for m, p in _package_modules() if p.name not in ("__init__.py", "__main__.py")
    )
    assert not [n for n, k in names.items() if k > 1]


@pytest.mark.parametrize(
    "source",
    [
        "from model.parse import parse_message",
        "import service.api.server",
        "from training import fit",
    ],
)
def test_the_bare_name_rule_can_fail(source: str) -> None:
    assert any(n.split(".")[0] in OUR_FOLDERS for n in _imports(source, "", False))


def test_the_public_surface() -> None:
    import spamgate

    assert sorted(spamgate.__all__) == sorted(dir(spamgate))
    for name in spamgate.__all__:
        assert getattr(spamgate, name) is not None
    with pytest.raises(AttributeError):
        _ = spamgate.Engine  # implementation, not surface (mypy allows it: __getattr__ loads names lazily)
