"""A policy or list file that is empty or cut short is refused by every path; the previous policy stays.

Paths: ``parse_policy`` (what every other path calls), ``PolicyHolder.reload``,
the ``ReloadPolicy`` RPC, SIGHUP to a running ``spamgate serve``, and start
(a configuration error: ``serve`` exits with the reason, never serves the
built-in policy instead).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spamgate.model.artifact import Artifact
from spamgate.service.api.client import SpamGateClient, envelope
from spamgate.service.api.launch import REPO, serve_command, start_serve
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.policy.policy_file import PolicyHolder, parse_policy
from spamgate.service.policy.settings import Action, PolicyError
from spamgate.service.runtime.config import ConfigError, load_config
from tests.conftest import serve_with_policy
from tests.mail import make

GOOD = """\
version = "v1"
block_action = "DELETE"
[thresholds]
tag = 0.999
[block]
senders = ["spammer@evil.example"]
senders_file = "blocked.txt"
"""
BLOCKED = "# blocked senders\nbulk@spam.example\nmore@spam.example\n"

# Every way a policy file can be emptied or cut short, with what the refusal says.
BAD_POLICIES = {
    "empty": (b"", "no settings"),
    "whitespace": (b"  \n\n\t\n", "no settings"),
    "comments only": (b"# policy, being rewritten\n\n# by hand\n", "no settings"),
    "cut mid-value": (GOOD.encode()[: GOOD.index("0.999") + 3], "no newline at its end"),  # tag = 0.9
    "cut mid-string": (GOOD.encode()[: GOOD.index("evil") + 2], "no newline at its end"),
    "cut after a table header line": (GOOD.encode()[: GOOD.index("[block]")] + b"[blo\n", "not valid TOML"),
    "cut mid-array at a line end": (b'version = "v1"\n[block]\nsenders = [\n  "a@b.example",\n', "TOML"),
    "not UTF-8 (cut mid-character)": ('version = "é"\n'.encode()[:12] + b'"\n', "not UTF-8"),
}


def write_good(folder: Path) -> Path:
    (folder / "blocked.txt").write_text(BLOCKED)
    path = folder / "policy.toml"
    path.write_text(GOOD)
    return path


def replace_atomically(path: Path, data: bytes) -> None:
    """The README's way: write policy.toml.new, then rename it over policy.toml."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    os.replace(new, path)


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_an_empty_or_cut_short_policy_file_is_refused(tmp_path: Path, case: str) -> None:
    path = write_good(tmp_path)
    assert parse_policy(path).block.match_sender("bulk@spam.example")
    data, why = BAD_POLICIES[case]
    path.write_bytes(data)
    with pytest.raises(PolicyError) as e:
        parse_policy(path)
    assert why in "\n".join(e.value.errors)
    assert all(x.startswith(f"{path}:") for x in e.value.errors)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "has no entries"),
        ("\n  \n", "has no entries"),
        ("# all gone\n", "has no entries"),
        ("bulk@spam.example\nmore@spam.exa", "no newline at its end"),
        ("bulk@spam.example\nmore@spam.example", "no newline at its end"),  # even when the cut parses
        (None, "cannot read list file"),
    ],
)
def test_an_empty_cut_short_or_missing_list_file_is_refused(
    tmp_path: Path, content: str | None, why: str
) -> None:
    path = write_good(tmp_path)
    holder = PolicyHolder(path)
    v1 = holder.current().version
    listed = tmp_path / "blocked.txt"
    if content is None:
        listed.unlink()
    else:
        listed.write_text(content)
    result = holder.reload()
    assert not result.reloaded and any(why in x and "blocked.txt" in x for x in result.errors), result.errors
    assert holder.current().version == v1
    assert holder.current().block.match_sender("bulk@spam.example")


def test_an_empty_list_file_is_accepted_when_the_policy_says_so(tmp_path: Path) -> None:
    path = write_good(tmp_path)
    (tmp_path / "blocked.txt").write_text("# nothing blocked this week\n")
    path.write_text("allow_empty_list_files = true\n" + GOOD)
    pol = parse_policy(path)
    assert pol.block.sizes()["senders"] == 1  # the inline entry
    path.write_text('allow_empty_list_files = "yes"\n' + GOOD)
    with pytest.raises(PolicyError, match="allow_empty_list_files: must be true or false"):
        parse_policy(path)
    # The switch does not excuse a cut-short list file.
    (tmp_path / "blocked.txt").write_text("bulk@spam.exa")
    path.write_text("allow_empty_list_files = true\n" + GOOD)
    with pytest.raises(PolicyError, match="no newline at its end"):
        parse_policy(path)


def test_reload_keeps_the_block_list_through_every_bad_file(tmp_path: Path) -> None:
    path = write_good(tmp_path)
    holder = PolicyHolder(path)
    v1 = holder.current().version
    for case, (data, why) in sorted(BAD_POLICIES.items()):
        path.write_bytes(data)
        result = holder.reload()
        assert not result.reloaded and why in "\n".join(result.errors), case
        assert holder.current().version == v1 and holder.current().block_action == Action.DELETE, case
        assert holder.current().block.match_sender("spammer@evil.example"), case
    replace_atomically(path, GOOD.replace("spammer@evil", "other@evil").encode())
    assert holder.reload().reloaded and holder.current().version != v1


def test_a_bad_policy_at_start_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="no settings"):
        load_config(None, {"policy": {"file": str(path)}})
    r = subprocess.run(
        serve_command(["--policy", str(path)]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 78 and "no settings" in r.stderr and "serving on" not in r.stdout


@pytest.fixture()
def rpc_server(small_model: Artifact, tmp_path: Path) -> Iterator[tuple[SpamGateClient, Path]]:
    path = write_good(tmp_path)
    socket = tmp_path / "admin.sock"  # ReloadPolicy is an admin call: refused on TCP
    with serve_with_policy(small_model, path, socket), SpamGateClient(f"unix:{socket}") as admin:
        yield admin, path


def test_reload_policy_rpc_refuses_an_emptied_file(rpc_server: tuple[SpamGateClient, Path]) -> None:
    c, path = rpc_server
    before = c.stub.GetPolicy(pb.GetPolicyRequest())
    for data, why in (BAD_POLICIES["empty"], BAD_POLICIES["cut mid-string"]):
        path.write_bytes(data)
        r = c.stub.ReloadPolicy(pb.ReloadPolicyRequest())
        assert not r.reloaded and why in "\n".join(r.errors) and r.version == before.version
        assert c.classify(make(), envelope(mail_from="spammer@evil.example")).action == pb.ACTION_DELETE
    (path.parent / "blocked.txt").write_text("")
    path.write_text(GOOD)
    r = c.stub.ReloadPolicy(pb.ReloadPolicyRequest())
    assert not r.reloaded and "has no entries" in "\n".join(r.errors)
    assert c.classify(make(), envelope(mail_from="bulk@spam.example")).action == pb.ACTION_DELETE


def _wait_for(log: Path, text: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {count}x {text!r} in the log: {log.read_text()[-2000:]}"
        time.sleep(0.05)


def test_sighup_refuses_an_emptied_or_cut_short_file(tmp_path: Path) -> None:
    path = write_good(tmp_path)
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc, port = start_serve(["--policy", str(path), "--log-format", "text"], stderr=err)
    try:
        with SpamGateClient(f"127.0.0.1:{port}") as c:
            before = c.stub.GetPolicy(pb.GetPolicyRequest()).version
            for n, data in enumerate((b"", GOOD.encode()[: GOOD.index("[block]") + 4]), 1):
                path.write_bytes(data)
                proc.send_signal(signal.SIGHUP)
                _wait_for(log, "policy reload rejected", n)
                assert c.stub.GetPolicy(pb.GetPolicyRequest()).version == before
                r = c.classify(make(), envelope(mail_from="spammer@evil.example"))
                assert r.action == pb.ACTION_DELETE and r.list_decision.startswith("block:")
            replace_atomically(path, GOOD.replace('"v1"', '"v2"').encode())
            proc.send_signal(signal.SIGHUP)
            _wait_for(log, "policy reloaded", 1)
            assert c.stub.GetPolicy(pb.GetPolicyRequest()).version.startswith("v2+")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_a_refused_reload_shows_in_the_metrics(small_model: Artifact, tmp_path: Path) -> None:
    """The previous policy keeps serving after a refused reload, so only a metric tells monitoring the
    edit is not in force (reload review: only the log and GetPolicy did)."""
    from spamgate.service.api.server import start_server
    from spamgate.service.runtime.config import load_config, with_server

    path = write_good(tmp_path)
    assert small_model.path is not None
    overrides: dict[str, dict[str, Any]] = {
        "metrics": {"port": 0},
        "policy": {"file": str(path)},
        "model": {"path": str(small_model.path)},
    }
    running = start_server(with_server(load_config(None, overrides), port=0))
    try:
        reg = running.engine.metrics.registry

        def sample(name: str, **labels: str) -> float | None:
            return reg.get_sample_value(name, labels)

        path.write_bytes(BAD_POLICIES["empty"][0])
        assert not running.engine.policies.reload().reloaded
        assert sample("spamgate_policy_reload_refused") == 1.0
        assert sample("spamgate_policy_reloads_total", result="refused") == 1.0
        path.write_text(GOOD)
        assert running.engine.policies.reload().reloaded
        assert sample("spamgate_policy_reload_refused") == 0.0
        assert sample("spamgate_policy_reloads_total", result="applied") == 1.0
    finally:
        running.stop(0).wait()
