"""``spamgate check`` as a pipe filter: tagged message out, exit code per verdict, fail modes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spamgate.model.artifact import Artifact
from spamgate.service.mta.plan import Plan, rewrite_message, tagged_subject
from tests.conftest import damaged_copy
from tests.mail import make

REPO = Path(__file__).resolve().parents[1]
MILTER = [sys.executable, "-m", "spamgate.service.cli", "milter"]
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "spamgate.service.cli", "check", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def test_rewrite_adds_headers_and_tags_subject_once() -> None:
    p = Plan("TAG", (("X-Spam-Flag", "YES"),), "[SPAM] ", "", "", "", "")
    out = rewrite_message(make({"Subject": "hello"}), p)
    assert out.startswith(b"X-Spam-Flag: YES\r\n") and b"Subject: [SPAM] hello\r\n" in out
    assert rewrite_message(out, p).count(b"[SPAM]") == 1
    assert tagged_subject(None, "[SPAM] ") == "[SPAM] "
    lf = make({"Subject": "x"}).replace(b"\r\n", b"\n")
    assert b"Subject: [SPAM] x\n" in rewrite_message(lf, p)


def test_check_exit_codes(tmp_path: Path, small_model: Artifact) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(
        '[thresholds]\ntag = 0.5\nreroute = "off"\nreject = 0.9999\ndelete = "off"\n'
        '[allow]\nsenders = ["friend@example.org"]\n'
    )
    base = ["--model", str(small_model.path), "--policy", str(policy)]
    gtube = make({"Subject": "test"}, body=GTUBE + "\n")
    r = run(base, gtube)
    assert r.returncode == 3 and b"X-Spam-Action: REJECT" in r.stdout  # REJECT
    r = run([*base, "--mail-from", "friend@example.org"], gtube)
    assert (
        r.returncode == 0 and b"not scanned" in r.stdout and r.stdout.endswith(gtube.split(b"\r\n\r\n", 1)[1])
    )


VERDICT_POLICY = """\
[thresholds]
tag = 0.5
reroute = "off"
reject = "off"
delete = "off"
[actions]
reroute_to = "quarantine@example.net"
[block]
senders = ["spammer@evil.example"]
[[domain]]
name = "rerouting"
recipient_domains = ["rr.example"]
[domain.thresholds]
reroute = 0.5
"""


def test_check_exit_code_per_verdict(tmp_path: Path, small_model: Artifact) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(VERDICT_POLICY)
    base = ["--model", str(small_model.path), "--policy", str(policy)]
    gtube = make({"Subject": "test"}, body=GTUBE + "\n")
    r = run(base, gtube)
    assert r.returncode == 1 and b"Subject: [SPAM] test" in r.stdout, r.stderr  # TAG
    r = run([*base, "--rcpt", "x@rr.example"], gtube)
    assert r.returncode == 2 and b"X-Spam-Reroute-To: quarantine@example.net" in r.stdout, r.stderr
    r = run([*base, "--mail-from", "<Spammer@Evil.Example.>"], make())
    assert r.returncode == 4 and b"X-Spam-Action: DELETE" in r.stdout, r.stderr
    r = run(base, make({"Subject": "lunch"}, body="See you at noon by the fountain.\n"))
    assert r.returncode == 0 and b"X-Spam-Status: No" in r.stdout, r.stderr
    assert r.stderr == b""


def test_a_configuration_error_is_exit_78_never_an_outage(tmp_path: Path, small_model: Artifact) -> None:
    """Exit 78 (EX_CONFIG) with one line on stderr and nothing on stdout, whatever the fail mode."""
    bad = tmp_path / "bad.toml"
    bad.write_text('sensitivity = "paranoid"\n')
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    model = ["--model", str(small_model.path)]
    cases = {
        "bad policy": ([*model, "--policy", str(bad)], "unknown preset 'paranoid'"),
        "empty policy": ([*model, "--policy", str(empty)], "no settings"),
        "missing policy": ([*model, "--policy", str(tmp_path / "nope.toml")], "cannot read"),
        "missing model": (["--model", str(tmp_path / "nope")], "no model there"),
        "damaged model": (["--model", str(damaged_copy(small_model, tmp_path / "damaged"))], "weights.npz"),
        "unknown argument": ([*model, "--bogus"], "unrecognized arguments: --bogus"),
        "bad value": ([*model, "--timeout", "soon"], "invalid float value"),
        "bad fail mode": ([*model, "--fail-mode", "maybe"], "invalid choice"),
        "zero timeout": ([*model, "--timeout", "0"], "--timeout must be > 0"),
        "server and model": (["--server", "127.0.0.1:1", *model], "not allowed with"),
        "server without port": (["--server", "localhost"], "must be HOST:PORT"),
        "server with policy": (
            ["--server", "127.0.0.1:1", "--policy", str(bad)],
            "--policy is for in-process",
        ),
    }
    for case, (args, why) in cases.items():
        # open is the mode that used to deliver unscanned; tempfail once, for the case
        for mode in ("open", "tempfail") if case == "bad policy" else ("open",):
            r = run([*args, "--fail-mode", mode] if case != "bad fail mode" else args, make())
            err = r.stderr.decode()
            assert r.returncode == 78, (case, mode, r.returncode, err)
            assert err.startswith("spamgate check: configuration error:") and why in err, (case, err)
            assert err.count("\n") == 1 and r.stdout == b"", (case, err)


def test_milter_refuses_to_start_on_a_configuration_error(tmp_path: Path) -> None:
    pytest.importorskip("Milter")
    cases = {
        "socket kind": (["--socket", "tcp:8894"], "must be inet:PORT@HOST"),
        "socket port": (["--socket", "inet:88940@127.0.0.1"], "port must be in 1..65535"),
        "socket folder": (["--socket", f"unix:{tmp_path}/no/such/dir/milter.sock"], "no folder"),
        "server": (["--server", "127.0.0.1"], "must be HOST:PORT"),
        "timeout": (["--timeout", "0"], "timeout must be > 0"),
        "max bytes": (["--max-bytes", "10"], "max_bytes must be >= 1024"),
    }
    for case, (args, why) in cases.items():
        r = subprocess.run(
            [*MILTER, "--socket", "inet:18894@127.0.0.1", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 78, (case, r.returncode, r.stderr)
        assert r.stderr.startswith("spamgate milter: configuration error:") and why in r.stderr, (
            case,
            r.stderr,
        )
        assert "spamgate milter on" not in r.stdout, case


def test_check_fail_modes() -> None:
    msg = make()
    r = run(["--server", "127.0.0.1:1", "--timeout", "1"], msg)
    assert r.returncode == 75 and b"spamgate check: spam filter unavailable (UNAVAILABLE" in r.stderr
    assert r.stdout == b""
    r = run(["--server", "127.0.0.1:1", "--timeout", "1", "--fail-mode", "open"], msg)
    # the status line takes the header block's line end: an LF line on a CRLF message (F6 e)
    assert (
        r.returncode == 0
        and r.stdout == b"X-Spam-Status: Unknown, not scanned (spam filter unavailable)\r\n" + msg
    )
    assert b"passed unscanned" in r.stderr  # said, not silent
    lf = msg.replace(b"\r\n", b"\n")
    r = run(["--server", "127.0.0.1:1", "--timeout", "1", "--fail-mode", "open"], lf)
    assert (
        r.returncode == 0
        and r.stdout == b"X-Spam-Status: Unknown, not scanned (spam filter unavailable)\n" + lf
    )


def test_a_message_above_the_server_limit_is_scanned_up_to_max_bytes_and_passed_whole(
    tmp_path: Path, small_model: Artifact
) -> None:
    """27.3 MB to a server taking 25 MiB got RESOURCE_EXHAUSTED and exit 75: the MTA retried a message
    that can never pass until the queue lifetime ran out (attack review F8). Like the milter, ``check``
    sends at most ``--max-bytes`` for scanning and writes the whole message, rewritten."""
    policy = tmp_path / "p.toml"
    policy.write_text(VERDICT_POLICY)
    body = "the quarterly numbers are attached as promised\n" * 600_000
    big = make({"Subject": "report"}, body=body)
    assert len(big) > 27_000_000
    from spamgate.service.api.server import start_server
    from spamgate.service.runtime.config import load_config, with_server

    cfg = load_config(None, {"metrics": {"port": 0}, "policy": {"file": str(policy)}})
    assert cfg.server.max_message_bytes == 25 * 1024 * 1024  # the default limit the review hit
    running = start_server(with_server(cfg, port=0))
    try:
        assert small_model.path is not None
        running.engine.holder.load(small_model.path)
        r = run(["--server", f"127.0.0.1:{running.port}", "--timeout", "60"], big)
    finally:
        running.stop(0).wait()
    assert r.returncode in (0, 1), (r.returncode, r.stderr[-500:])
    head, _, rest = r.stdout.partition(b"\r\n\r\n")
    assert b"\r\nX-Spam-Status: " in head and rest == big.split(b"\r\n\r\n", 1)[1], head


@pytest.mark.parametrize("mode", ["tempfail", "open"])
def test_a_refusal_that_means_configuration_is_exit_78_not_the_fail_mode(
    tmp_path: Path, small_model: Artifact, mode: str
) -> None:
    """--max-bytes above the server's own limit: the server refuses the message (INVALID_ARGUMENT
    naming the limit). That is the hook's configuration, not an outage: it was exit 75 ("unavailable",
    the MTA retrying every message until its queue lifetime ran out) or, in open mode, every message
    passed unscanned. The same holds for UNAUTHENTICATED and PERMISSION_DENIED (a token or role)."""
    from spamgate.service.api.server import start_server
    from spamgate.service.runtime.config import load_config, with_server

    cfg = load_config(None, {"metrics": {"port": 0}, "server": {"max_message_bytes": 64 * 1024}})
    running = start_server(with_server(cfg, port=0))
    try:
        assert small_model.path is not None
        running.engine.holder.load(small_model.path)
        server = ["--server", f"127.0.0.1:{running.port}", "--timeout", "30", "--fail-mode", mode]
        big = make({"Subject": "report"}, body="the quarterly numbers are attached\n" * 4000)
        assert 64 * 1024 < len(big) < 1024 * 1024
        r = run([*server, "--max-bytes", str(1024 * 1024)], big)
        ok = run(server, make())  # the same server scores an ordinary message
    finally:
        running.stop(0).wait()
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert b"configuration error" in r.stderr and b"INVALID_ARGUMENT" in r.stderr, r.stderr
    assert r.stdout == b""
    assert ok.returncode in range(5), ok.stderr  # a verdict (0-4 by action)


def test_max_bytes_is_checked_like_the_milters(small_model: Artifact) -> None:
    model = ["--model", str(small_model.path)]
    r = run([*model, "--max-bytes", "1023"], make())
    assert r.returncode == 78 and r.stdout == b"", r.stderr
    assert r.stderr == b"spamgate check: configuration error: --max-bytes must be >= 1024, got 1023\n"
    # a verdict on the first 1024 bytes; the message written whole
    msg = make({"Subject": "lunch"}, body="See you at noon by the fountain.\n" * 200)
    r = run([*model, "--max-bytes", "1024"], msg)
    assert r.returncode in range(5) and r.stdout.endswith(msg) and b"X-Spam-Status: " in r.stdout, r.stderr


def test_an_empty_message_is_a_data_error_not_an_outage(small_model: Artifact) -> None:
    """Empty stdin exited 75 as an outage (F8): the MTA retried the same nothing until it gave up."""
    for args in (["--model", str(small_model.path)], ["--server", "127.0.0.1:1", "--timeout", "1"]):
        for mode in ("open", "tempfail"):
            r = run([*args, "--fail-mode", mode], b"")
            assert r.returncode == 65 and r.stdout == b"", (args, mode, r.returncode, r.stderr)
            assert r.stderr == b"spamgate check: no message on standard input (0 bytes); exit 65\n", r.stderr


def test_closed_or_unreadable_stdin_is_a_configuration_error(small_model: Artifact, tmp_path: Path) -> None:
    """``spamgate check <&-`` raised AttributeError: a traceback and exit 1, which reads as TAG (F8)."""
    check = [sys.executable, "-m", "spamgate.service.cli", "check", "--model", str(small_model.path)]
    # closed; open for writing only (a folder on stdin stops Python itself before ``check`` runs)
    for redirect in ("<&-", f"0> {tmp_path / 'out'}"):
        r = subprocess.run(
            ["sh", "-c", f'exec "$@" {redirect}', "sh", *check], cwd=REPO, capture_output=True, timeout=120
        )
        err = r.stderr.decode()
        assert r.returncode == 78 and r.stdout == b"", (redirect, r.returncode, err)
        assert err.startswith(
            "spamgate check: configuration error: cannot read the message from standard input"
        )
        assert err.count("\n") == 1 and "Traceback" not in err, err


def test_check_fail_open_keeps_the_mbox_line_first_and_drops_a_forged_status() -> None:
    """Passed unscanned, the message goes through the same rewrite as a verdict: procmail's mbox
    "From " line stays first (the status line went above it, and procmail then wrote ">From" and ran
    two messages together) and the sender's own X-Spam-Status is not left beside ours."""
    lf = make().replace(b"\r\n", b"\n")
    forged = b"From bob@example.org Mon Nov 30 10:00:00 2026\nX-Spam-Status: No, score=-100\n" + lf
    r = run(["--server", "127.0.0.1:1", "--timeout", "1", "--fail-mode", "open"], forged)
    assert r.returncode == 0 and r.stdout.startswith(b"From bob@example.org Mon Nov 30")
    assert b"X-Spam-Status: Unknown, not scanned (spam filter unavailable)\n" in r.stdout
    assert b"score=-100" not in r.stdout and r.stdout.endswith(lf)
