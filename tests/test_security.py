"""Hostile clients (issue 16): TLS/mTLS, the admin socket, roles, tokens, audit log, reflection, redaction.

Servers bind 127.0.0.1 and Unix sockets under tmp_path only.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from spamgate.service.api import admin_socket
from spamgate.service.api.access import RULES, AccessPolicy, Principal, Refused
from spamgate.service.api.client import SpamGateClient, envelope, is_local_target
from spamgate.service.api.launch import REPO, serve_command, start_serve
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.redact import public_manifest_json, scrub_paths
from spamgate.service.api.server import RunningServer, start_server
from spamgate.service.api.status_codes import status_code
from spamgate.service.cli.main import main
from spamgate.service.runtime.config import ConfigError, load_config, with_server
from spamgate.service.scoring.model_holder import ModelHolder
from tests.mail import make
from tests.pki import Authority, Issued

SPAM = pb.FEEDBACK_LABEL_SPAM


def _start(
    tmp: Path, sections: dict[str, dict[str, Any]] | None = None, budget: bool = False
) -> RunningServer:
    over: dict[str, dict[str, Any]] = {
        "metrics": {"port": 0},
        "admin": {"socket": str(tmp / "admin.sock")},
        "limits": {"cpu_budget_ms": 500 if budget else 0},  # no scoring pool unless the test is about it
    }
    for section, values in (sections or {}).items():
        over.setdefault(section, {}).update(values)
    cfg = with_server(load_config(None, over), port=0)
    holder = ModelHolder()
    running = start_server(cfg, holder)
    holder.load(cfg.model_path)
    return running


def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


# ---- PKI and mTLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority(folder / "ca")
    other = Authority(folder / "other", "someone else's CA")
    return {
        "ca": ca,
        "server": ca.issue("server", "spamgate.test", server=True),
        "ops": ca.issue("ops", "ops"),  # [roles] admin
        "gateway": ca.issue("gateway", "mx1", sans=["mx1.example.net"]),  # no role listed: client
        "helpdesk": ca.issue("helpdesk", "helpdesk", sans=["reports.example.net"]),  # [roles] reporter by SAN
        "stranger": other.issue("stranger", "ops"),  # right CN, wrong CA
    }


def _tls_sections(pki: dict[str, Any], mtls: bool = True) -> dict[str, dict[str, Any]]:
    server: Issued = pki["server"]
    tls = {"cert_file": str(server.cert), "key_file": str(server.key)}
    if not mtls:
        return {"tls": tls}
    return {
        "tls": {**tls, "client_ca_file": str(pki["ca"].ca_file)},
        "roles": {"admin": ["CN=ops"], "reporter": ["SAN=reports.example.net"]},
    }


def _client(port: int, pki: dict[str, Any], who: str | None, timeout: float = 10) -> SpamGateClient:
    ident: Issued | None = pki[who] if who else None
    return SpamGateClient(
        f"127.0.0.1:{port}",
        timeout=timeout,
        tls_ca_file=str(pki["ca"].ca_file),
        tls_cert_file=str(ident.cert) if ident else None,
        tls_key_file=str(ident.key) if ident else None,
    )


@pytest.fixture(scope="module")
def mtls_server(pki: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("mtls")
    running = _start(tmp, {**_tls_sections(pki), "feedback": {"db": str(tmp / "fb.db")}}, budget=True)
    yield running
    running.stop(0).wait()


def test_classify_path_over_mtls(mtls_server: RunningServer, pki: dict[str, Any], tmp_path: Path) -> None:
    port = mtls_server.port
    spam = make({"Subject": "FREE VIAGRA!!! click now"}, body="cheap pills http://pills.example.biz/buy now")
    with _client(port, pki, "gateway") as c:
        r = c.classify(make(), envelope("192.0.2.7", "mail.example.org", "a@example.org", ["b@example.net"]))
        assert r.model_version and r.verdict_id and r.action == pb.ACTION_DELIVER
        out = list(
            c.classify_stream(
                [pb.ClassifyRequest(message=m, correlation_id=str(i)) for i, m in enumerate([make(), spam])],
                timeout=30,
            )
        )
        assert [o.correlation_id for o in out] == ["0", "1"] and not any(o.error for o in out)
        assert out[1].spam_probability > out[0].spam_probability
        assert c.model_info().model_version == r.model_version
    # the CLI and the pipe filter over mTLS
    msg = tmp_path / "m.eml"
    msg.write_bytes(make())
    gw: Issued = pki["gateway"]
    conn = ["--tls-ca", str(pki["ca"].ca_file), "--tls-cert", str(gw.cert), "--tls-key", str(gw.key)]
    assert main(["classify", "--server", f"127.0.0.1:{port}", *conn, str(msg)]) == 0
    r2 = subprocess.run(
        [sys.executable, "-m", "spamgate.service.cli", "check", "--server", f"127.0.0.1:{port}", *conn],
        input=make(),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert r2.returncode == 0 and b"X-Spam" in r2.stdout, r2.stderr


@pytest.mark.parametrize("who", [None, "stranger", "plaintext"])
def test_a_client_without_a_certificate_from_the_ca_is_refused(
    mtls_server: RunningServer, pki: dict[str, Any], who: str | None
) -> None:
    if who == "plaintext":
        c = SpamGateClient(f"127.0.0.1:{mtls_server.port}", timeout=3)
    else:
        c = _client(mtls_server.port, pki, who, timeout=3)
    with c:
        assert _code(lambda: c.classify(make())) == grpc.StatusCode.UNAVAILABLE  # the handshake fails


def test_roles_from_client_certificates(mtls_server: RunningServer, pki: dict[str, Any]) -> None:
    report = pb.FeedbackRequest(message=make({"Subject": "mtls report"}), label=SPAM, reporter="x")
    with _client(mtls_server.port, pki, "gateway") as gw:  # CA-signed, in no [roles] list: client
        assert (
            _code(lambda: gw.stub.ReloadPolicy(pb.ReloadPolicyRequest())) == grpc.StatusCode.PERMISSION_DENIED
        )
        assert _code(lambda: gw.stub.ReportFeedback(report)) == grpc.StatusCode.PERMISSION_DENIED
    with _client(mtls_server.port, pki, "helpdesk") as rep:  # SAN=reports.example.net: reporter
        assert rep.stub.ReportFeedback(report).message_sha256
        assert (
            _code(lambda: rep.stub.ReloadPolicy(pb.ReloadPolicyRequest()))
            == grpc.StatusCode.PERMISSION_DENIED
        )
    with _client(mtls_server.port, pki, "ops") as ops:  # CN=ops: admin
        assert ops.stub.ReloadPolicy(pb.ReloadPolicyRequest()).errors == [
            "no policy file configured (built-in policy)"
        ]
        assert ops.stub.ReportFeedback(report).message_sha256


def _replace_server_cert(pki_server: Issued, new: Issued) -> None:
    """Swap the files the way a renewal agent does: write beside, rename over."""
    for src, dst in ((new.key, pki_server.key), (new.cert, pki_server.cert)):
        tmp = dst.with_suffix(".new")
        tmp.write_bytes(src.read_bytes())
        os.chmod(tmp, 0o600)
        os.replace(tmp, dst)


def test_server_certificate_is_reloaded_without_a_restart(tmp_path: Path) -> None:
    ca1, ca2 = Authority(tmp_path / "ca1", "CA one"), Authority(tmp_path / "ca2", "CA two")
    live = ca1.issue("live", "spamgate.test", server=True)
    running = _start(tmp_path, {"tls": {"cert_file": str(live.cert), "key_file": str(live.key)}})
    target = f"127.0.0.1:{running.port}"
    try:
        with SpamGateClient(target, timeout=5, tls_ca_file=str(ca1.ca_file)) as c:
            assert c.classify(make()).model_version
        _replace_server_cert(live, ca2.issue("renewed", "spamgate.test", server=True))
        # New connections get the renewed certificate: a client trusting only CA two now connects...
        with SpamGateClient(target, timeout=5, tls_ca_file=str(ca2.ca_file)) as c:
            assert c.classify(make()).model_version
        # ...and one trusting only CA one no longer does.
        with SpamGateClient(target, timeout=3, tls_ca_file=str(ca1.ca_file)) as c:
            assert _code(lambda: c.classify(make())) == grpc.StatusCode.UNAVAILABLE
        assert running.certificates is not None and running.certificates.reloads == 1
        # A broken renewal (half-written certificate) is refused; the renewed certificate stays.
        live.cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
        with SpamGateClient(target, timeout=5, tls_ca_file=str(ca2.ca_file)) as c:
            assert c.classify(make()).model_version
        assert running.certificates.reloads == 1
    finally:
        running.stop(0).wait()


def test_tls_without_client_certificates(pki: dict[str, Any], tmp_path: Path) -> None:
    running = _start(tmp_path, _tls_sections(pki, mtls=False))
    try:
        with _client(running.port, pki, None) as c:  # TLS, no client certificate: anonymous
            assert c.classify(make()).model_version
            assert (
                _code(lambda: c.stub.ReloadPolicy(pb.ReloadPolicyRequest()))
                == grpc.StatusCode.PERMISSION_DENIED
            )
        with SpamGateClient(f"127.0.0.1:{running.port}", timeout=3) as plain:
            assert _code(lambda: plain.classify(make())) == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0).wait()


# ---- the admin socket


@pytest.fixture()
def plain_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = _start(tmp_path, {"feedback": {"db": str(tmp_path / "fb.db")}})
    yield running
    running.stop(0).wait()


def test_admin_calls_are_refused_on_tcp_and_served_on_the_socket(plain_server: RunningServer) -> None:
    report = pb.FeedbackRequest(message=make({"Subject": "socket report"}), label=SPAM, reporter="r")
    with SpamGateClient(f"127.0.0.1:{plain_server.port}", timeout=10) as tcp:
        assert tcp.classify(make()).model_version  # classify stays open to anonymous callers
        for call in (
            lambda: tcp.stub.ReloadPolicy(pb.ReloadPolicyRequest()),
            lambda: tcp.stub.ActivateModel(pb.ActivateModelRequest(version="x")),
            lambda: tcp.stub.ReportFeedback(report),
        ):
            assert _code(call) == grpc.StatusCode.PERMISSION_DENIED
    with SpamGateClient(plain_server.admin_target, timeout=10) as admin:
        assert admin.stub.ReloadPolicy(pb.ReloadPolicyRequest()).version
        assert admin.stub.ReportFeedback(report).message_sha256
        # past the access check: the servicer's own answer (no registry configured)
        assert _code(lambda: admin.stub.ActivateModel(pb.ActivateModelRequest(version="x"))) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )


def test_admin_socket_is_private_and_removed_at_stop(tmp_path: Path) -> None:
    running = _start(tmp_path)
    assert running.admin is not None
    path = running.admin.path
    st = path.lstat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sg")] == []  # the bind folder is gone
    running.stop(0).wait()
    assert not path.exists()


def test_a_stale_socket_is_replaced_and_a_live_one_is_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: what a killed server leaves behind
    first = _start(tmp_path)
    try:
        with SpamGateClient(first.admin_target, timeout=5) as admin:
            assert admin.stub.ReloadPolicy(pb.ReloadPolicyRequest()).version
        with pytest.raises(OSError, match="another server is listening"):
            _start(tmp_path)
        with SpamGateClient(first.admin_target, timeout=5) as admin:  # still the first server's
            assert admin.stub.ReloadPolicy(pb.ReloadPolicyRequest()).version
    finally:
        first.stop(0).wait()
    path.write_text("not a socket")
    with pytest.raises(admin_socket.AdminSocketError, match="not a socket"):
        _start(tmp_path)
    assert path.read_text() == "not a socket"


def test_default_socket_folder_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert admin_socket.socket_path(load_config().admin, 50051) == tmp_path / "spamgate" / "admin-50051.sock"
    (tmp_path / "spamgate").mkdir(mode=0o777)
    os.chmod(tmp_path / "spamgate", 0o777)
    cfg = with_server(load_config(None, {"metrics": {"port": 0}}), port=0)
    with pytest.raises(admin_socket.AdminSocketError, match="closed to others"):
        start_server(cfg)
    os.chmod(tmp_path / "spamgate", 0o700)
    running = start_server(cfg)
    try:
        assert running.admin is not None and running.admin.path.parent == tmp_path / "spamgate"
        assert running.admin.path.name == f"admin-{running.port}.sock"
    finally:
        running.stop(0).wait()


def test_feedback_cli_reaches_the_admin_socket(plain_server: RunningServer, tmp_path: Path) -> None:
    msg = tmp_path / "spam.eml"
    msg.write_bytes(make({"Subject": "cli report"}))
    assert main(["feedback", "--spam", str(msg), "--server", plain_server.admin_target]) == 0
    assert main(["feedback", "--spam", str(msg), "--server", f"127.0.0.1:{plain_server.port}"]) == 2


# ---- tokens


def _tokens(tmp: Path, lines: str, mode: int = 0o600) -> Path:
    path = tmp / "tokens"
    path.write_text(lines)
    os.chmod(path, mode)
    return path


def _token_file(tmp: Path, name: str, token: str) -> str:
    path = tmp / name
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return str(path)


ADMIN_TOKEN, REPORTER_TOKEN, CLIENT_TOKEN = "a" * 20 + "dm1n", "r" * 24, "c" * 24


def test_bearer_token_roles_and_reload(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path, f"admin {ADMIN_TOKEN} ops\nreporter {REPORTER_TOKEN}\nclient {CLIENT_TOKEN}\n")
    running = _start(
        tmp_path, {"auth": {"tokens_file": str(tokens)}, "feedback": {"db": str(tmp_path / "fb.db")}}
    )
    target = f"127.0.0.1:{running.port}"
    report = pb.FeedbackRequest(message=make({"Subject": "token report"}), label=SPAM, reporter="r")

    def client(token: str) -> SpamGateClient:
        return SpamGateClient(target, timeout=10, token_file=_token_file(tmp_path, f"t{token[:4]}", token))

    try:
        with client(CLIENT_TOKEN) as c:
            assert c.classify(make()).model_version
            assert _code(lambda: c.stub.ReportFeedback(report)) == grpc.StatusCode.PERMISSION_DENIED
        with client(REPORTER_TOKEN) as r:
            assert r.stub.ReportFeedback(report).message_sha256
            assert (
                _code(lambda: r.stub.ReloadPolicy(pb.ReloadPolicyRequest()))
                == grpc.StatusCode.PERMISSION_DENIED
            )
        with client(ADMIN_TOKEN) as a:
            assert a.stub.ReloadPolicy(pb.ReloadPolicyRequest()).version
            assert a.stub.ReportFeedback(report).message_sha256
        with client("x" * 30) as bad:  # an unknown token is refused even for Classify
            assert _code(lambda: bad.classify(make())) == grpc.StatusCode.UNAUTHENTICATED
        # rotate: the reporter token goes, a new admin token comes; no restart
        time.sleep(0.01)
        _tokens(tmp_path, f"admin {'n' * 30}\nclient {CLIENT_TOKEN}\n")
        with client(REPORTER_TOKEN) as r:
            assert _code(lambda: r.classify(make())) == grpc.StatusCode.UNAUTHENTICATED
        with client("n" * 30) as a:
            assert a.stub.ReloadPolicy(pb.ReloadPolicyRequest()).version
        # a changed file with an error keeps the tokens in force
        _tokens(tmp_path, "admin short\n")
        with client("n" * 30) as a:
            assert a.stub.ReloadPolicy(pb.ReloadPolicyRequest()).version
    finally:
        running.stop(0).wait()


def test_tokens_file_problems_are_configuration_errors(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path, f"admin {ADMIN_TOKEN}\n", mode=0o644)
    with pytest.raises(ConfigError, match="open to other users"):
        load_config(None, {"auth": {"tokens_file": str(tokens)}})
    tokens = _tokens(tmp_path, f"root {ADMIN_TOKEN}\nadmin short\nclient {ADMIN_TOKEN}\n")
    with pytest.raises(ConfigError) as e:
        load_config(None, {"auth": {"tokens_file": str(tokens)}})
    text = str(e.value)
    assert "unknown role 'root'" in text and "at least 16" in text and "earlier line" in text
    tokens = _tokens(tmp_path, f"admin {ADMIN_TOKEN}\n")
    with pytest.raises(ConfigError, match="in clear"):
        load_config(None, {"auth": {"tokens_file": str(tokens)}, "server": {"address": "0.0.0.0"}})


def test_clients_never_send_a_token_in_clear_over_a_network(tmp_path: Path) -> None:
    token = _token_file(tmp_path, "tok", CLIENT_TOKEN)
    with pytest.raises(ValueError, match="in clear"):
        SpamGateClient("mail.example.net:50051", token_file=token)
    assert is_local_target("127.0.0.1:50051") and is_local_target("[::1]:50051")
    assert is_local_target("unix:/run/spamgate/admin.sock") and is_local_target("localhost:1")
    assert not is_local_target("10.0.0.1:50051") and not is_local_target("dns:///mail.example.net:50051")
    os.chmod(token, 0o644)
    with pytest.raises(ValueError, match="open to other users"):
        SpamGateClient("127.0.0.1:50051", token_file=token)


def test_a_target_listing_several_addresses_is_local_only_if_every_one_is(tmp_path: Path) -> None:
    """gRPC's ipv4:/ipv6: targets list addresses and balance over them: one remote is a network path."""
    assert is_local_target("ipv4:127.0.0.1:1,127.0.0.2:2") and is_local_target("ipv6:[::1]:1,[::1]:2")
    for target in (
        "ipv4:127.0.0.1:1,10.0.0.5:50051",
        "ipv4:10.0.0.5:50051,127.0.0.1:1",
        "ipv6:[::1]:1,[2001:db8::5]:50051",
        "ipv4:127.0.0.1:1,",  # an empty entry is no loopback address
    ):
        assert not is_local_target(target), target
    token = _token_file(tmp_path, "tok", CLIENT_TOKEN)
    with pytest.raises(ValueError, match="in clear"):
        SpamGateClient("ipv4:127.0.0.1:1,10.0.0.5:50051", token_file=token)


def test_anonymous_switches(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path, f"client {CLIENT_TOKEN}\n")
    running = _start(
        tmp_path,
        {
            "auth": {"anonymous": False, "tokens_file": str(tokens)},
            "admin": {"anonymous_feedback": True},
            "feedback": {"db": str(tmp_path / "fb.db")},
        },
    )
    target = f"127.0.0.1:{running.port}"
    try:
        with SpamGateClient(target, timeout=10) as anon:
            assert _code(lambda: anon.classify(make())) == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(anon.channel)  # load balancers probe without credentials
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        with SpamGateClient(target, timeout=10, token_file=_token_file(tmp_path, "t", CLIENT_TOKEN)) as c:
            assert c.classify(make()).model_version
            # anonymous_feedback = true lets any caller report (the client role included)
            assert c.stub.ReportFeedback(pb.FeedbackRequest(message=make(), label=SPAM)).message_sha256
    finally:
        running.stop(0).wait()


# ---- the audit log


def test_admin_calls_are_audited_without_message_bodies(plain_server: RunningServer, tmp_path: Path) -> None:
    secret = "body-words-that-must-not-be-logged-7f3a"
    report = pb.FeedbackRequest(message=make({"Subject": "audit"}, body=secret), label=SPAM, reporter="alice")
    with SpamGateClient(f"127.0.0.1:{plain_server.port}", timeout=10) as tcp:
        _code(lambda: tcp.stub.ReportFeedback(report))
        _code(lambda: tcp.stub.ActivateModel(pb.ActivateModelRequest(version="v-refused")))
    with SpamGateClient(plain_server.admin_target, timeout=10) as admin:
        stored = admin.stub.ReportFeedback(report)
        admin.stub.ReloadPolicy(pb.ReloadPolicyRequest())
    log = tmp_path / "spamgate-audit.jsonl"  # default: beside the feedback database
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(x["method"], x["result"], x["who"]["role"]) for x in lines] == [
        ("ReportFeedback", "PERMISSION_DENIED", "anonymous"),
        ("ActivateModel", "PERMISSION_DENIED", "anonymous"),
        ("ReportFeedback", "OK", "admin"),
        ("ReloadPolicy", "OK", "admin"),
    ]
    assert lines[0]["who"]["peer"].startswith("ipv4:127.0.0.1:") and lines[2]["who"]["peer"].startswith(
        "unix:"
    )
    assert lines[1]["args"] == {"version": "v-refused"}
    assert lines[2]["args"] == {
        "label": "spam",
        "reporter": "alice",
        "verdict_id": "",
        "message_bytes": len(report.message),
    }
    assert lines[2]["outcome"]["message_sha256"] == stored.message_sha256
    assert lines[3]["outcome"]["reloaded"] is False and lines[3]["time"].endswith("+00:00")


def test_refusals_are_rate_limited_in_the_audit_log(tmp_path: Path) -> None:
    from spamgate.service.api.audit import REFUSALS_PER_SECOND, AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    while int(time.monotonic() + 0.2) != int(time.monotonic()):  # not across a second boundary
        time.sleep(0.05)
    for _ in range(REFUSALS_PER_SECOND + 5):
        log.record({"role": "anonymous"}, "ReloadPolicy", {}, "PERMISSION_DENIED", refused=True)
    log.record({"role": "admin"}, "ReloadPolicy", {}, "OK")  # successes are never dropped
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == REFUSALS_PER_SECOND + 1
    time.sleep(1.05)
    log.record({"role": "anonymous"}, "ReloadPolicy", {}, "PERMISSION_DENIED", refused=True)
    last = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert last["suppressed"] == 5


# ---- reflection and redaction


def _reflection_names(target: str) -> set[str]:
    with grpc.insecure_channel(target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
        return {s.name for s in resp.list_services_response.service}


def test_reflection_off_on_tcp_stays_on_the_admin_socket(tmp_path: Path) -> None:
    running = _start(tmp_path, {"server": {"reflection": False}})
    try:
        with pytest.raises(grpc.RpcError) as e:
            _reflection_names(f"127.0.0.1:{running.port}")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "spamgate.v1.SpamGate" in _reflection_names(running.admin_target)
    finally:
        running.stop(0).wait()


def test_reflection_default_depends_on_the_address() -> None:
    assert AccessPolicy.from_config(load_config()).reflection_on_tcp  # 127.0.0.1
    for address in ("0.0.0.0", "192.0.2.10", "::"):
        cfg = load_config(None, {"server": {"address": address}})
        assert not AccessPolicy.from_config(cfg).reflection_on_tcp, address
        cfg = load_config(None, {"server": {"address": address, "reflection": True}})
        assert AccessPolicy.from_config(cfg).reflection_on_tcp


def test_no_paths_for_callers_without_the_admin_role(plain_server: RunningServer) -> None:
    with SpamGateClient(f"127.0.0.1:{plain_server.port}", timeout=10) as tcp:
        public = json.loads(tcp.model_info().manifest_json)
    with SpamGateClient(plain_server.admin_target, timeout=10) as admin:
        full = json.loads(admin.model_info().manifest_json)
    assert "--data /" in full["training"]["command"]  # the bundled model's command names its data folder
    assert public["training"]["command"] == ""
    assert '"/' not in json.dumps(public) and " /" not in json.dumps(public)


def test_scrub_paths() -> None:
    assert scrub_paths("/etc/spamgate/policy.toml:3: block: bad") == "policy.toml:3: block: bad"
    assert scrub_paths("python -m x --data /work/data --out ~/models/") == "python -m x --data data --out "
    assert scrub_paths("spamgate-model/1 https://host/a/b") == "spamgate-model/1 https://host/a/b"
    # file: URLs, another user's home, relative paths climbing out (issue 16: these passed through)
    assert scrub_paths("corpus file:///home/alice/data, ok") == "corpus data, ok"
    assert scrub_paths("FILE://server/share/mail:2") == "mail:2"
    assert scrub_paths("file:/home/alice/x") == "x"
    assert scrub_paths("see ~alice/mail and ~/spam") == "see mail and spam"
    assert scrub_paths("--data ../../home/bob/corpus --out ./models") == "--data corpus --out models"
    assert scrub_paths("v1.2/3 a..b 1/2 spamgate-index/2") == "v1.2/3 a..b 1/2 spamgate-index/2"
    manifest = json.dumps({"training": {"command": "train /srv/x", "corpora": [{"name": "/srv/c/ham"}]}})
    assert json.loads(public_manifest_json(manifest)) == {
        "training": {"command": "", "corpora": [{"name": "ham"}]}
    }


# ---- configuration


def test_every_rpc_has_an_access_rule() -> None:
    service = pb.DESCRIPTOR.services_by_name["SpamGate"]
    assert {f"/{service.full_name}/{m.name}" for m in service.methods} <= set(RULES)
    # a method nobody has ruled on yet (a new RPC) is admin-only
    policy, anyone = AccessPolicy(), Principal("reporter", "token:x", "ipv4:127.0.0.1:1")
    with pytest.raises(Refused) as e:
        policy.check(f"/{service.full_name}/SomethingNew", anyone)
    assert status_code(e.value) == grpc.StatusCode.PERMISSION_DENIED
    policy.check(f"/{service.full_name}/SomethingNew", Principal("admin", "admin-socket", "unix:"))


def test_security_configuration_errors_exit_78_all_at_once(pki: dict[str, Any], tmp_path: Path) -> None:
    wrong_key: Issued = pki["ops"]
    tokens = _tokens(tmp_path, f"admin {ADMIN_TOKEN}\n", mode=0o644)
    config = tmp_path / "spamgate.toml"
    config.write_text(
        f'[tls]\ncert_file = "{pki["server"].cert}"\nkey_file = "{wrong_key.key}"\n'
        f'client_ca_file = "{tmp_path / "missing.pem"}"\n'
        f'[auth]\ntokens_file = "{tokens}"\n'
        f'[roles]\nadmin = ["ops"]\n'
        f'[admin]\nsocket = "{tmp_path / "nowhere" / "admin.sock"}"\n'
    )
    r = subprocess.run(
        serve_command(["--config", str(config)]), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 78, r.stderr
    for key in (
        "[tls] key_file",
        "[tls] client_ca_file",
        "[auth] tokens_file",
        "[roles] admin",
        "[admin] socket",
    ):
        assert key in r.stderr, (key, r.stderr)
    assert "Traceback" not in r.stderr


def test_expired_or_foreign_certificates_are_configuration_errors(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    old = pki["ca"].issue("old", "spamgate.test", server=True, expired=True)
    with pytest.raises(ConfigError, match="expired"):
        load_config(None, {"tls": {"cert_file": str(old.cert), "key_file": str(old.key)}})
    with pytest.raises(ConfigError, match="cert_file and key_file go together"):
        load_config(None, {"tls": {"cert_file": str(old.cert)}})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_config(None, {"tls": {"cert_file": str(pki["server"].cert), "key_file": str(garbage)}})


def test_multi_process_serve_has_one_admin_socket(tmp_path: Path) -> None:
    sock = tmp_path / "admin.sock"
    config = tmp_path / "spamgate.toml"
    config.write_text(f'[admin]\nsocket = "{sock}"\n[limits]\ncpu_budget_ms = 0\n')
    proc, port = start_serve(["--config", str(config), "--processes", "2"])
    try:
        with SpamGateClient(f"unix:{sock}", timeout=10) as admin:
            assert admin.stub.ReloadPolicy(pb.ReloadPolicyRequest()).version
        with SpamGateClient(f"127.0.0.1:{port}", timeout=10) as tcp:
            for _ in range(4):  # whichever worker answers
                assert _code(lambda: tcp.stub.ReloadPolicy(pb.ReloadPolicyRequest())) == (
                    grpc.StatusCode.PERMISSION_DENIED
                )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not sock.exists()


def test_the_milter_reaches_an_mtls_server(mtls_server: RunningServer, pki: dict[str, Any]) -> None:
    pytest.importorskip("Milter")
    from spamgate.service.mta.milter import MilterConfig

    gw: Issued = pki["gateway"]
    cfg = MilterConfig(
        f"127.0.0.1:{mtls_server.port}",
        tls_ca_file=str(pki["ca"].ca_file),
        tls_cert_file=str(gw.cert),
        tls_key_file=str(gw.key),
    )
    with cfg.client() as c:
        assert c.classify(make()).model_version


def test_client_connection_options_are_configuration_errors_in_mta_hooks(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    pytest.importorskip("Milter")
    loose = _token_file(tmp_path, "loose", CLIENT_TOKEN)
    os.chmod(loose, 0o644)
    gw: Issued = pki["gateway"]
    cases = {
        "missing CA": (["--tls-ca", str(tmp_path / "nope.pem")], "cannot read"),
        "cert without key": (["--tls-cert", str(gw.cert)], "needs its key"),
        "key of another cert": (
            ["--tls-cert", str(gw.cert), "--tls-key", str(pki["ops"].key)],
            "not the key",
        ),
        "open token file": (["--token-file", loose], "open to other users"),
    }
    for case, (args, why) in cases.items():
        for command in (["check", "--server", "127.0.0.1:1"], ["milter", "--socket", "inet:18895@127.0.0.1"]):
            r = subprocess.run(
                [sys.executable, "-m", "spamgate.service.cli", *command, *args],
                input=b"" if command[0] == "check" else None,
                cwd=REPO,
                capture_output=True,
                timeout=60,
            )
            err = r.stderr.decode()
            assert r.returncode == 78 and "configuration error" in err and why in err, (case, command, err)
    r = subprocess.run(
        [sys.executable, "-m", "spamgate.service.cli", "check", "--tls-ca", str(pki["ca"].ca_file)],
        input=make(),
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 78 and b"are for --server" in r.stderr


@pytest.mark.parametrize("fail_mode", ["open", "tempfail"])
def test_a_hook_that_does_not_trust_the_servers_certificate_is_misconfigured(
    mtls_server: RunningServer, pki: dict[str, Any], fail_mode: str
) -> None:
    """The wrong CA fails the handshake on the hook's side: exit 78, not an outage (75 or, in open
    mode, the message passed unscanned with exit 0, as the MTA attack review found)."""
    gw: Issued = pki["gateway"]
    wrong_ca = ["--tls-ca", str(pki["stranger"].cert), "--tls-cert", str(gw.cert), "--tls-key", str(gw.key)]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "spamgate.service.cli",
            "check",
            "--server",
            f"127.0.0.1:{mtls_server.port}",
            "--fail-mode",
            fail_mode,
            "--timeout",
            "5",
            *wrong_ca,
        ],
        input=make(),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 78 and b"configuration error" in r.stderr and b"handshake" in r.stderr, r.stderr
    assert r.stdout == b""


def test_serve_process_with_mtls(pki: dict[str, Any], tmp_path: Path) -> None:
    server, gw = pki["server"], pki["gateway"]
    config = tmp_path / "spamgate.toml"
    config.write_text(
        f'[tls]\ncert_file = "{server.cert}"\nkey_file = "{server.key}"\n'
        f'client_ca_file = "{pki["ca"].ca_file}"\n'
        f'[admin]\nsocket = "{tmp_path / "admin.sock"}"\n[limits]\ncpu_budget_ms = 0\n'
    )
    log = tmp_path / "serve.log"
    conn: dict[str, Any] = {
        "tls_ca_file": str(pki["ca"].ca_file),
        "tls_cert_file": str(gw.cert),
        "tls_key_file": str(gw.key),
    }
    with log.open("w") as err:
        proc, port = start_serve(["--config", str(config)], stderr=err, **conn)
    try:
        with SpamGateClient(f"127.0.0.1:{port}", timeout=10, **conn) as c:
            assert c.classify(make()).model_version
        listening = next(json.loads(x) for x in log.read_text().splitlines() if '"listening"' in x)
        assert listening["admin_socket"] == str(tmp_path / "admin.sock") and listening["tls"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=30)
