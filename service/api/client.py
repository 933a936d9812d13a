"""A small client for gateway code (the CLI and the milter use it).

TLS (``tls_ca_file``, and ``tls_cert_file`` + ``tls_key_file`` for mTLS) and a bearer
token (``token_file``) match the server's ``[tls]`` and ``[auth]`` sections; a
``unix:PATH`` target reaches the admin socket (README "Security").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import grpc

from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.proto_gen import spamgate_pb2_grpc as pb_grpc


def envelope(
    client_ip: str = "", helo: str = "", mail_from: str = "", rcpt_to: Iterable[str] = ()
) -> pb.Envelope:
    """Build the SMTP envelope of a request."""
    return pb.Envelope(client_ip=client_ip, helo=helo, mail_from=mail_from, rcpt_to=list(rcpt_to))


def is_local_target(target: str) -> bool:
    """True for a Unix socket or loopback hosts only: where a token in clear meets no network.

    ``ipv4:a:1,b:2`` (and ``ipv6:``) lists several addresses that gRPC balances over, so every
    one must be loopback: the first alone deciding sent the token in clear to the others (issue 16).
    """
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    rest = target
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        rest = rest.removeprefix(scheme)
    return all(_is_loopback_address(address) for address in rest.split(","))


def _is_loopback_address(address: str) -> bool:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address on loopback (an empty one is not)."""
    from spamgate.service.runtime.security_config import is_loopback

    if address.startswith("["):
        host = address[1 : address.find("]")]
    elif address.count(":") == 1:
        host = address.partition(":")[0]
    else:
        host = address  # no port, or a bare IPv6 address
    return is_loopback(host)


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer TOKEN`` to every call (the stub's calls included)."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(details._replace(metadata=[*(details.metadata or ()), self.header]), request)

    intercept_unary_unary = _with_token
    intercept_unary_stream = _with_token
    intercept_stream_unary = _with_token
    intercept_stream_stream = _with_token


def open_channel(
    target: str,
    options: list[tuple[str, Any]] | None = None,
    tls_ca_file: str | None = None,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
    token_file: str | None = None,
    tls: bool = False,
) -> grpc.Channel:
    """A channel to ``target``: TLS with ``tls`` or any ``tls_*`` file, a bearer token with ``token_file``.

    Raises ``TlsError`` or ``TokensError`` (configuration errors, and ``ValueError``s) for an
    unusable file, and ``TokensError`` for a token that would travel in clear over a network
    (no TLS, target not local).
    """
    from spamgate.service.api.bearer_tokens import TokensError, read_token_file
    from spamgate.service.api.tls import channel_credentials

    tls = tls or bool(tls_ca_file or tls_cert_file or tls_key_file)
    credentials = channel_credentials(tls_ca_file, tls_cert_file, tls_key_file) if tls else None
    token = read_token_file(token_file) if token_file else None
    if token and not tls and not is_local_target(target):
        raise TokensError(
            [f"token_file: the token would cross the network in clear to {target}: give tls_ca_file too"]
        )
    if credentials is not None:
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    return grpc.intercept_channel(channel, _BearerToken(token)) if token else channel


class SpamGateClient:
    """Blocking client for ``spamgate.v1.SpamGate``.

    target: ``host:port`` of the server (``unix:PATH`` for the admin socket). timeout:
    default deadline per call in seconds (a gateway must never wait on us longer than
    its own budget). tls: TLS, trusting the system's CAs; tls_ca_file: TLS, trusting the
    CA in this file; tls_cert_file, tls_key_file: this client's certificate and key
    (mTLS, implies TLS); token_file: a file holding a bearer token (``[auth]
    tokens_file`` on the server). Raises ``TlsError`` or ``TokensError`` for an unusable file
    (both ``ConfigurationError``s), ``ValueError`` for a timeout that is not > 0.
    """

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        token_file: str | None = None,
        tls: bool = False,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.timeout = timeout
        self.channel = open_channel(
            target,
            [
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                # Reconnect within seconds after a service restart: gRPC's default
                # backoff grows to 120 s, far too long for a mail gateway.
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.min_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            token_file,
            tls,
        )
        self.stub = pb_grpc.SpamGateStub(self.channel)

    def classify(
        self,
        message: bytes,
        env: pb.Envelope | None = None,
        correlation_id: str = "",
        policy: str = "",
        timeout: float | None = None,
    ) -> pb.ClassifyResponse:
        """One verdict; raises ``grpc.RpcError`` with the server's status on failure."""
        req = pb.ClassifyRequest(message=message, envelope=env, correlation_id=correlation_id, policy=policy)
        return self.stub.Classify(req, timeout=timeout or self.timeout)

    def classify_stream(
        self, requests: Iterable[pb.ClassifyRequest], timeout: float | None = None
    ) -> Iterator[pb.ClassifyResponse]:
        """Verdicts for a stream of requests over one call, in order."""
        return iter(self.stub.ClassifyStream(iter(requests), timeout=timeout))

    def report_feedback(
        self,
        message: bytes = b"",
        spam: bool = True,
        reporter: str = "",
        verdict_id: str = "",
        timeout: float | None = None,
    ) -> pb.FeedbackResponse:
        """Report the right label for a message (by its bytes, or by the ``verdict_id`` it was given)."""
        label = pb.FEEDBACK_LABEL_SPAM if spam else pb.FEEDBACK_LABEL_HAM
        req = pb.FeedbackRequest(message=message, verdict_id=verdict_id, label=label, reporter=reporter)
        return self.stub.ReportFeedback(req, timeout=timeout or self.timeout)

    def model_info(self, timeout: float | None = None) -> pb.ModelInfo:
        return self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout or self.timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects (raises ``grpc.FutureTimeoutError``)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SpamGateClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
