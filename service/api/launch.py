"""Start ``spamgate serve`` as a child process on a free port and wait until it answers.

For benchmarks, tests and scripts that need a real server process (the
stdout line "spamgate serving on HOST:PORT" carries the ephemeral port).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]  # resolved: through the spamgate/service link


def serve_command(extra_args: list[str] | None = None) -> list[str]:
    """The ``spamgate serve`` command line on ephemeral ports (the port is printed on stdout)."""
    return [
        sys.executable,
        "-m",
        "spamgate.service.cli",
        "serve",
        "--port",
        "0",
        "--metrics-port",
        "0",
        *(extra_args or []),
    ]


def start_serve(
    extra_args: list[str] | None = None,
    stderr: int | IO[Any] = subprocess.DEVNULL,
    timeout: float = 60.0,
    **connection: Any,
) -> tuple[subprocess.Popen[str], int]:
    """Launch ``spamgate serve --port 0 --metrics-port 0 EXTRA…``; (process, port) once a model answers.

    ``connection``: how to reach a server configured with TLS or mTLS (``tls_ca_file``,
    ``tls_cert_file``, ``tls_key_file``: ``service.api.client.open_channel``'s parameters).
    """
    from spamgate.service.api.client import open_channel

    proc = subprocess.Popen(
        serve_command(extra_args),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving on" not in line:
        proc.kill()
        raise RuntimeError(f"spamgate serve did not start (exit {proc.wait()}): {line!r}")
    port = int(line.rsplit(":", 1)[1])
    deadline = time.time() + timeout
    # Ready means Health says SERVING: the model is loaded in the server and in every scoring worker
    # (GetModelInfo answers as soon as the server has it, before the workers do).
    with open_channel(f"127.0.0.1:{port}", **connection) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return proc, port
            except grpc.RpcError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"spamgate serve on port {port} never became SERVING") from None
            time.sleep(0.1)
