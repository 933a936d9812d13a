"""The milter's callbacks, without an MTA: what it hands the service and what it asks the MTA to do.

(The end-to-end path through a real Postfix is tests/test_postfix_integration.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from spamgate.service.api.proto_gen import spamgate_pb2 as pb

Milter = pytest.importorskip("Milter")

from spamgate.service.mta import milter as m  # noqa: E402


class _FakeClient:
    def __init__(self, answer: pb.ClassifyResponse) -> None:
        self.answer = answer
        self.raw = b""
        self.env: Any = None

    def classify(self, raw: bytes, env: Any, correlation_id: str = "", timeout: float = 0.0) -> Any:
        self.raw, self.env = raw, env
        return self.answer


class _Recorded(m.SpamgateMilter):
    """The milter with libmilter's calls recorded instead of sent to an MTA."""

    def __init__(self) -> None:
        super().__init__()
        self._protocol = 0  # what libmilter negotiated: no "no reply" steps
        self.calls: list[tuple[Any, ...]] = []

    def addheader(self, *args: Any) -> None:
        for a in args:
            if isinstance(a, str):
                a.encode("utf-8")  # what pymilter's C call does: strict UTF-8
        self.calls.append(("addheader", *args))

    def chgheader(self, *args: Any) -> None:
        for a in args:
            if isinstance(a, str):
                a.encode("utf-8")
        self.calls.append(("chgheader", *args))

    def setreply(self, *args: Any) -> None:
        if "%" in args[-1].replace("%%", ""):
            raise ValueError("'%' must be doubled")  # as pymilter's setreply
        self.calls.append(("setreply", *args))

    def getsymval(self, name: str) -> str:
        return "QID1"


@pytest.fixture
def tagging(monkeypatch: pytest.MonkeyPatch) -> _FakeClient:
    answer = pb.ClassifyResponse(
        action=pb.ACTION_TAG, subject_tag="[SPAM] ", scanned=True, spam_probability=0.99
    )
    answer.add_headers.add(name="X-Spam-Flag", value="YES")
    client = _FakeClient(answer)
    monkeypatch.setattr(m._Shared, "client", client)
    return client


def _feed(mil: _Recorded, headers: list[tuple[str, bytes]], body: bytes) -> int:
    mil.connect("client.example", 2, ("192.0.2.7", 25))  # socket.AF_INET
    mil.hello("h\udcffelo")  # an 8-bit HELO, as pymilter passes it
    mil.envfrom("<s\udce9nder@example.org>")
    mil.envrcpt("<bob@example.net>")
    for name, value in headers:
        mil.header(name, value)
    mil.eoh()
    mil.body(body)
    return int(mil.eom())


def test_eight_bit_subject_and_envelope_reach_the_mta_as_utf8(tagging: _FakeClient) -> None:
    """A Latin-1 Subject on a TAG verdict made chgheader raise (strict UTF-8), outside any handler;
    an 8-bit HELO made the request itself raise, leaving the mail unscanned."""
    mil = _Recorded()
    rc = _feed(mil, [("From", b"a@example.org"), ("Subject", b"Gr\xfc\xdfe")], b"hello\r\n")
    assert rc == Milter.ACCEPT and tagging.raw  # scanned, not failed
    assert tagging.env.helo == "h\ufffdelo"
    changed = [c for c in mil.calls if c[0] == "chgheader"]
    assert changed == [("chgheader", "Subject", 1, "[SPAM] Gr\ufffd\ufffde")]


def test_mail_with_no_mail_header_field_is_handed_over_as_mail(tagging: _FakeClient) -> None:
    """Only odd fields ("Foo: bar"): read as written it would be text handed over alone (capped at TAG,
    judged by the text-only points); the milter hands it over with an empty header block."""
    mil = _Recorded()
    _feed(mil, [("Foo", b"bar")], b"buy now\r\n")
    assert tagging.raw == b"\r\nFoo: bar\r\n\r\nbuy now\r\n"
    mil = _Recorded()
    _feed(mil, [("Foo", b"bar"), ("Received", b"from x by y")], b"hi\r\n")
    assert tagging.raw.startswith(b"Foo: bar\r\n")


def test_a_percent_in_the_reject_text_still_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    """pymilter reads the reply text as a format: "100% spam" raised, and the MTA turned every REJECT
    into a TEMPFAIL."""
    answer = pb.ClassifyResponse(
        action=pb.ACTION_REJECT, reject_text="5.7.1 Rejected: 100% spam", scanned=True
    )
    monkeypatch.setattr(m._Shared, "client", _FakeClient(answer))
    mil = _Recorded()
    assert _feed(mil, [("From", b"a@example.org")], b"x\r\n") == Milter.REJECT
    assert ("setreply", "550", "5.7.1", "Rejected: 100%% spam") in mil.calls


def test_calls_in_flight_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that hangs: past the bound the milter answers at once instead of queueing the
    message's bytes for a call nobody waits for."""
    import threading

    release = threading.Event()

    class _Hanging(_FakeClient):
        def classify(self, raw: bytes, env: Any, correlation_id: str = "", timeout: float = 0.0) -> Any:
            release.wait(10)
            return self.answer

    monkeypatch.setattr(m._Shared, "client", _Hanging(pb.ClassifyResponse(action=pb.ACTION_DELIVER)))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=0.05, fail_mode="tempfail"))
    monkeypatch.setattr(m._Shared, "inflight", threading.BoundedSemaphore(2))
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(_feed(_Recorded(), [], b"x"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = _Recorded()
    import time

    t0 = time.monotonic()
    assert _feed(busy, [], b"x") == Milter.TEMPFAIL and codes == [Milter.TEMPFAIL] * 2
    assert time.monotonic() - t0 < 0.5  # answered at once, not after the call's timeout
    assert ("setreply", "451", "4.7.1", "Spam filter temporarily unavailable, try again later") in busy.calls
    release.set()
    m._Shared.pool.submit(lambda: None).result(timeout=10)  # the hung calls end and free their places
    for _ in range(100):
        if m._Shared.inflight._value == 2:
            break
        threading.Event().wait(0.05)
    assert m._Shared.inflight._value == 2


class _Refusing(_FakeClient):
    """A server that answers every call with one gRPC status."""

    def __init__(self, code: Any, details: str = "refused") -> None:
        super().__init__(pb.ClassifyResponse())
        self.code = code
        self.text = details

    def classify(self, raw: bytes, env: Any, correlation_id: str = "", timeout: float = 0.0) -> Any:
        import grpc

        code, text = self.code, self.text

        class _Refusal(grpc.RpcError):
            def code(self) -> Any:
                return code

            def details(self) -> str:
                return text

        raise _Refusal()


@pytest.mark.parametrize("name", ["UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT"])
def test_a_refusal_that_means_configuration_is_451_in_open_mode_too(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A token the server does not know (or a size it refuses) is the milter's configuration: in open
    mode it had passed every message unscanned, as if the service were down."""
    import grpc

    monkeypatch.setattr(m._Shared, "client", _Refusing(getattr(grpc.StatusCode, name)))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0, fail_mode="open"))
    mil = _Recorded()
    assert _feed(mil, [("From", b"a@example.org")], b"x\r\n") == Milter.TEMPFAIL
    assert ("setreply", "451", "4.7.1", "Spam filter misconfigured, try again later") in mil.calls
    assert not [c for c in mil.calls if c[0] == "addheader"]  # nothing passed "not scanned"


# gRPC's details for a TLS handshake the client failed (wrong CA), as grpcio reports it.
WRONG_CA = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50051: Tls handshake failed "
    "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
    "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK"
)


def test_a_tls_handshake_the_milter_failed_is_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """UNAVAILABLE with a failed TLS handshake: the CA or name is wrong; open mode passed all mail."""
    import grpc

    monkeypatch.setattr(m._Shared, "client", _Refusing(grpc.StatusCode.UNAVAILABLE, WRONG_CA))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0, fail_mode="open"))
    mil = _Recorded()
    assert _feed(mil, [("From", b"a@example.org")], b"x\r\n") == Milter.TEMPFAIL
    assert ("setreply", "451", "4.7.1", "Spam filter misconfigured, try again later") in mil.calls


def test_an_outage_still_follows_the_fail_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import grpc

    monkeypatch.setattr(m._Shared, "client", _Refusing(grpc.StatusCode.UNAVAILABLE))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0, fail_mode="open"))
    mil = _Recorded()
    assert _feed(mil, [("From", b"a@example.org")], b"x\r\n") == Milter.ACCEPT
    assert any(c[0] == "addheader" and "not scanned" in str(c) for c in mil.calls)
