"""One JSON shape for a verdict: `classify --json` prints the same with or without `--server` (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spamgate.service.api.proto_convert import verdict_from_proto, verdict_to_proto
from spamgate.service.api.server import start_server
from spamgate.service.cli.main import main
from spamgate.service.policy.policy_file import PolicyHolder
from spamgate.service.runtime.config import load_config, with_server
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Request, build_verdict, verdict_dict
from tests.mail import html, make


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_proto_round_trip_keeps_every_field() -> None:
    holder = ModelHolder()
    holder.load(load_config().model_path)
    for raw in (make(), html("<p>WIN <b>$1,000,000</b> now! <a href='http://x.example/'>claim</a></p>")):
        v = build_verdict(Request(message=raw), holder, PolicyHolder(None).current(), 1 << 24)
        assert verdict_dict(verdict_from_proto(verdict_to_proto(v))) == verdict_dict(v)


def test_classify_json_is_the_same_in_process_and_through_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msgs = [tmp_path / "ham.eml", tmp_path / "spam.eml"]
    msgs[0].write_bytes(make())
    msgs[1].write_bytes(html("<p>Cheap pills, <b>no prescription</b>: <a href='http://rx.example/'>order</a></p>"))
    over: dict[str, dict[str, object]] = {
        "metrics": {"port": 0},
        "admin": {"socket": "off"},
        "limits": {"cpu_budget_ms": 0},
    }
    cfg = with_server(load_config(None, over), port=0)
    holder = ModelHolder()
    running = start_server(cfg, holder)
    holder.load(cfg.model_path)
    try:
        assert main(["classify", "--json", *map(str, msgs)]) == 0
        local = _lines(capsys)
        assert main(["classify", "--json", "--server", f"127.0.0.1:{running.port}", *map(str, msgs)]) == 0
        remote = _lines(capsys)
    finally:
        running.stop(0).wait()
    assert len(local) == 2 and local == remote
