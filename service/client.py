"""A small client for gateway code (the CLI and the milter use it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType

import grpc

from service.proto_gen import spamgate_pb2 as pb
from service.proto_gen import spamgate_pb2_grpc as pb_grpc


def envelope(
    client_ip: str = "", helo: str = "", mail_from: str = "", rcpt_to: Iterable[str] = ()
) -> pb.Envelope:
    """Build the SMTP envelope of a request."""
    return pb.Envelope(client_ip=client_ip, helo=helo, mail_from=mail_from, rcpt_to=list(rcpt_to))


class SpamGateClient:
    """Blocking client for ``spamgate.v1.SpamGate``.

    target: ``host:port`` of the server. timeout: default deadline per call
    in seconds (a gateway must never wait on us longer than its own budget).
    """

    def __init__(self, target: str, timeout: float = 10.0, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                # Reconnect within seconds after a service restart: gRPC's default
                # backoff grows to 120 s, far too long for a mail gateway.
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.min_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
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
