"""Checks of the [tls], [admin], [auth] and [roles] sections, run with the rest of ``config.validate``.

Every file named is read now (certificates, keys, the tokens file), so a bad one
stops ``spamgate serve`` at start with exit 78 and the key named, instead of
failing the first handshake or call.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from spamgate.service.runtime.config import Config


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (0.0.0.0 and :: are every address, not loopback)."""
    host = address.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def security_errors(cfg: Config) -> list[str]:
    from spamgate.service.api import admin_socket, audit
    from spamgate.service.api.bearer_tokens import TokensError, parse_tokens
    from spamgate.service.api.tls import server_file_errors

    errors = server_file_errors(cfg.tls)
    if cfg.server.address.startswith("unix"):
        errors.append("[server] address is the TCP listener's; the Unix socket is [admin] socket")
    for role in ("admin", "reporter", "client"):
        for entry in getattr(cfg.roles, role):
            if not isinstance(entry, str) or not entry.startswith(("CN=", "SAN=")) or entry[-1] == "=":
                errors.append(f'[roles] {role}: {entry!r} must be "CN=name" or "SAN=name"')
    if any((cfg.roles.admin, cfg.roles.reporter, cfg.roles.client)) and not cfg.tls.client_ca_file:
        errors.append("[roles] names client certificates, which need [tls] client_ca_file (mTLS)")
    if cfg.auth.tokens_file:
        try:
            parse_tokens(Path(cfg.auth.tokens_file))
        except TokensError as exc:
            errors.extend(exc.errors)
        if not cfg.tls.enabled and not is_loopback(cfg.server.address):
            errors.append(
                f"[auth] tokens_file: tokens would cross the network in clear to {cfg.server.address}:"
                " configure [tls] (or listen on a loopback address)"
            )
    errors.extend(admin_socket.path_errors(cfg.admin))
    errors.extend(audit.path_errors(cfg))
    return errors
