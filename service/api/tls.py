"""TLS for the TCP listener and for clients: PEM files checked up front, server certificates re-read live.

The server's credentials come from ``grpc.dynamic_ssl_server_credentials`` with a
fetcher that gRPC calls before every new TLS handshake: it compares the files'
(mtime, size) with those last read and, when they changed, reads and checks them
again. A renewed certificate (certbot, an internal CA's agent) is therefore used
from the next connection on, without a restart; open connections keep theirs.
A set of files that fails the checks (half-written, key and certificate from
different renewals) is logged and the previous certificate stays in use.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spamgate.model.errors import ConfigurationError
from spamgate.service.runtime.config import TlsSection

log = logging.getLogger("spamgate.tls")


class TlsError(ConfigurationError, ValueError):
    """A TLS file that cannot be used; the message names the file and why."""


def _read(what: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"{what} {path!r}: cannot read: {exc.strerror}") from exc


def read_certificates(what: str, path: str) -> tuple[bytes, list[x509.Certificate]]:
    """The PEM bytes of ``path`` and its certificates (at least one, none expired)."""
    data = _read(what, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsError(f"{what} {path!r}: not a PEM certificate: {exc}") from exc
    now = datetime.now(UTC)
    for cert in certs:
        if cert.not_valid_after_utc < now:
            raise TlsError(
                f"{what} {path!r}: certificate {cert.subject.rfc4514_string()!r} expired on"
                f" {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
            )
    return data, certs


def read_key_pair(cert_what: str, cert_file: str, key_what: str, key_file: str) -> tuple[bytes, bytes]:
    """(key PEM, certificate chain PEM), checked to belong together."""
    chain, certs = read_certificates(cert_what, cert_file)
    key_pem = _read(key_what, key_file)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: an encrypted key
        raise TlsError(f"{key_what} {key_file!r}: not an unencrypted PEM private key: {exc}") from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, spki) != certs[0].public_key().public_bytes(enc, spki):
        raise TlsError(f"{key_what} {key_file!r} is not the key of the certificate in {cert_file!r}")
    return key_pem, chain


def server_file_errors(tls: TlsSection) -> list[str]:
    """Every problem with the [tls] files, each naming its key (config validation)."""
    if not tls.enabled:
        return []
    errors: list[str] = []
    if not tls.cert_file or not tls.key_file:
        errors.append("[tls] cert_file and key_file go together: give both (or neither, for plaintext)")
    else:
        try:
            read_key_pair("[tls] cert_file", tls.cert_file, "[tls] key_file", tls.key_file)
        except TlsError as exc:
            errors.append(str(exc))
    if tls.client_ca_file:
        try:
            read_certificates("[tls] client_ca_file", tls.client_ca_file)
        except TlsError as exc:
            errors.append(str(exc))
    return errors


def _certificate_configuration(tls: TlsSection) -> grpc.ServerCertificateConfiguration:
    key, chain = read_key_pair("[tls] cert_file", tls.cert_file, "[tls] key_file", tls.key_file)
    roots = read_certificates("[tls] client_ca_file", tls.client_ca_file)[0] if tls.client_ca_file else None
    return grpc.ssl_server_certificate_configuration([(key, chain)], roots)


@dataclass(frozen=True)
class _Stamp:
    # (inode, mtime_ns, size) per file, (-1, -1, -1) when missing: a file replaced by rename(2)
    # with its old mtime kept (cp -p, rsync -t) still has a new inode.
    files: tuple[tuple[int, int, int], ...]


class ReloadingCertificates:
    """The certificate-configuration fetcher: a new configuration when the files changed, else None."""

    def __init__(self, tls: TlsSection) -> None:
        self.tls = tls
        self._paths = [p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p]
        self._lock = threading.Lock()
        self._seen = self._stamp()
        self.initial = _certificate_configuration(tls)  # raises TlsError: a configuration error at start
        self.reloads = 0

    def _stamp(self) -> _Stamp:
        out = []
        for p in self._paths:
            try:
                st = os.stat(p)
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((-1, -1, -1))
        return _Stamp(tuple(out))

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC on every new connection: a stat per file when nothing changed.
        try:
            with self._lock:
                stamp = self._stamp()
                if stamp == self._seen:
                    return None
                self._seen = stamp  # a bad set is tried again only once the files change again
                try:
                    config = _certificate_configuration(self.tls)
                except TlsError as exc:
                    log.error(
                        "TLS files changed but cannot be used; the previous ones stay",
                        extra={"why": str(exc)},
                    )
                    return None
                self.reloads += 1
                log.info("TLS certificates reloaded", extra={"cert_file": self.tls.cert_file})
                return config
        except Exception:  # never let an error here break a handshake
            log.exception("TLS certificate reload failed")
            return None


def server_credentials(tls: TlsSection) -> tuple[grpc.ServerCredentials, ReloadingCertificates]:
    """Credentials for ``add_secure_port`` and the fetcher behind them (tests read its ``reloads``)."""
    fetcher = ReloadingCertificates(tls)
    creds = grpc.dynamic_ssl_server_credentials(
        fetcher.initial, fetcher, require_client_authentication=bool(tls.client_ca_file)
    )
    return creds, fetcher


def channel_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """Client credentials: the CA to trust (default: the system's), and a client certificate for mTLS."""
    if bool(cert_file) != bool(key_file):
        raise TlsError("a client certificate needs its key: give both tls_cert_file and tls_key_file")
    roots = read_certificates("tls_ca_file", ca_file)[0] if ca_file else None
    key, chain = (
        read_key_pair("tls_cert_file", cert_file, "tls_key_file", key_file)
        if cert_file and key_file
        else (None, None)
    )
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)
