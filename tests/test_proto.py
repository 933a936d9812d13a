"""The committed gRPC stubs are exactly what `make proto` generates from protos/."""

from __future__ import annotations

from pathlib import Path

from spamgate.service.api import proto_build


def test_stubs_are_not_stale(tmp_path: Path) -> None:
    fresh = proto_build.generate(tmp_path)
    for f in fresh:
        committed = proto_build.OUT / f.name
        assert committed.exists(), f"{f.name} missing: run `make proto`"
        assert committed.read_text() == f.read_text(), f"{f.name} is stale against protos/: run `make proto`"
    assert {f.name for f in fresh} == {p.name for p in proto_build.OUT.iterdir() if p.is_file()}


def test_every_field_is_documented() -> None:
    lines = [
        x.strip() for x in (proto_build.PROTO_ROOT / "spamgate/v1/spamgate.proto").read_text().splitlines()
    ]
    assert "package spamgate.v1;" in lines
    for i, s in enumerate(lines):
        is_decl = (
            s.endswith(";") and "=" in s and not s.startswith(("//", "option", "syntax"))
        ) or s.startswith(("message ", "enum ", "rpc ", "service "))
        if is_decl and "UNSPECIFIED" not in s:
            assert lines[i - 1].startswith("//"), f"undocumented: {s}"
