"""The connection options of every command that talks to a server: TLS, client certificate, token.

``spamgate classify``, ``feedback``, ``milter`` and ``check`` take the same
``--tls``/``--tls-ca``/``--tls-cert``/``--tls-key``/``--token-file`` options, passed to
``SpamGateClient`` as is (README "Security").
"""

from __future__ import annotations

import argparse
import math
from typing import Any


def seconds(text: str) -> float:
    """An argparse type for ``--timeout``: a positive, finite number of seconds (else argparse exits 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def add_client_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection to the server (see README: Security)")
    g.add_argument("--tls", action="store_true", help="TLS, trusting the system's CA certificates")
    g.add_argument("--tls-ca", metavar="PEM", help="TLS, trusting the CA certificate(s) in this file")
    g.add_argument("--tls-cert", metavar="PEM", help="client certificate for mTLS (with --tls-key)")
    g.add_argument("--tls-key", metavar="PEM", help="the client certificate's private key")
    g.add_argument("--token-file", metavar="FILE", help="file holding a bearer token ([auth] tokens_file)")


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """``SpamGateClient`` keyword arguments from the parsed options."""
    return {
        "tls": bool(args.tls),
        "tls_ca_file": args.tls_ca,
        "tls_cert_file": args.tls_cert,
        "tls_key_file": args.tls_key,
        "token_file": args.token_file,
    }
