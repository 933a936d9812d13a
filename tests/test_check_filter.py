"""``spamgate check`` as a pipe filter: tagged message out, exit code per verdict, fail modes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from model.artifact import Artifact
from service.mta import Plan, rewrite_message, tagged_subject
from tests.mail import make

REPO = Path(__file__).resolve().parents[1]
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "check", *args],
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


def test_check_fail_modes() -> None:
    msg = make()
    r = run(["--server", "127.0.0.1:1", "--timeout", "1"], msg)
    assert r.returncode == 75 and b"spamgate check" in r.stderr
    r = run(["--server", "127.0.0.1:1", "--timeout", "1", "--fail-mode", "open"], msg)
    assert (
        r.returncode == 0
        and r.stdout.startswith(b"X-Spam-Status: Unknown, not scanned")
        and r.stdout.endswith(msg)
    )
