"""The admin listener: a Unix socket that only the service's own user (and root) can open.

Admin RPCs (ActivateModel, ReloadPolicy, ReportFeedback by default) are refused on the
TCP listener; on this socket every caller has the admin role (``service.api.access``).
Filesystem permissions are the authentication: the socket is mode 0600.

Where: ``[admin] socket``; ``"off"`` for none; ``""`` (default) for ``admin-PORT.sock`` in
the first of ``$RUNTIME_DIRECTORY`` (what systemd's ``RuntimeDirectory=`` sets, e.g.
/run/spamgate), ``$XDG_RUNTIME_DIR/spamgate``, or ``/tmp/spamgate-UID``. A runtime
directory rather than the registry or feedback folder: those may be on shared or
network storage, where a socket is meaningless, and a service may have neither. The
port in the name keeps servers on one host apart (tests start many on ephemeral ports).
A folder spamgate creates is mode 0700; an existing /tmp/spamgate-UID must be ours
and closed to others (as tmux checks its /tmp folder), or someone else could have
prepared it.

A leftover socket file from a killed server is removed when nothing answers on it;
one with a live server behind it is an error (gRPC itself would silently unlink it
and take the path over). The socket is bound in a private 0700 folder beside the
final path, made 0600 and renamed into place, so it is never reachable with the
umask's mode, not even between bind and chmod.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc

from spamgate.model.errors import ConfigurationError
from spamgate.service.runtime.config import AdminSection

log = logging.getLogger("spamgate.admin")

OFF = "off"
_TMP_EXTRA = len("/.sgXXXXXXXX/s")  # the private folder the socket is bound in first
MAX_PATH_BYTES = 107 - _TMP_EXTRA  # sun_path holds 107 bytes and a NUL


class AdminSocketError(ConfigurationError):
    """The admin socket's folder or path cannot be used (a configuration error)."""


def default_dir() -> Path:
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime)
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg:
        return Path(xdg) / "spamgate"
    return Path(tempfile.gettempdir()) / f"spamgate-{os.getuid()}"


def socket_path(admin: AdminSection, port: int) -> Path | None:
    """The admin socket for a server on TCP ``port`` (None: ``socket = "off"``)."""
    if admin.socket == OFF:
        return None
    if admin.socket:
        return Path(admin.socket).absolute()
    return default_dir() / f"admin-{port}.sock"


def path_errors(admin: AdminSection) -> list[str]:
    """Problems with an explicitly configured socket path (config validation)."""
    if admin.socket in ("", OFF):
        return []
    path = Path(admin.socket).absolute()
    errors = []
    if len(os.fsencode(str(path))) > MAX_PATH_BYTES:
        errors.append(
            f"[admin] socket {str(path)!r} is {len(os.fsencode(str(path)))} bytes long; at most"
            f" {MAX_PATH_BYTES} (a Unix socket path holds 107 and spamgate binds in a folder beside it first)"
        )
    folder = path.parent
    if not folder.is_dir():
        errors.append(f"[admin] socket {str(path)!r}: no folder {str(folder)!r}")
    elif not os.access(folder, os.W_OK | os.X_OK):
        errors.append(f"[admin] socket {str(path)!r}: cannot create it in {str(folder)!r} (permission)")
    else:
        mode = folder.stat().st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            errors.append(
                f"[admin] socket {str(path)!r}: any user may replace files in {str(folder)!r}"
                " (world-writable, no sticky bit)"
            )
    return errors


def _private_dir(folder: Path) -> None:
    """Create ``folder`` (0700) if missing; refuse one we did not make private."""
    try:
        folder.mkdir(mode=0o700, parents=True)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        raise AdminSocketError(f"[admin] socket: cannot create {str(folder)!r}: {exc.strerror}") from exc
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise AdminSocketError(f"[admin] socket: {str(folder)!r} is not a folder")
    if folder == default_dir() and os.environ.get("RUNTIME_DIRECTORY"):
        return  # systemd made it for this service (mode RuntimeDirectoryMode=)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise AdminSocketError(
            f"[admin] socket: {str(folder)!r} must belong to this user and be closed to others"
            f" (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); remove it or set [admin] socket"
        )


def _clear_stale(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AdminSocketError(f"[admin] socket {str(path)!r} exists and is not a socket; not removed")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise OSError(f"[admin] socket {str(path)!r}: cannot tell whether it is in use: {exc}") from exc
        path.unlink(missing_ok=True)
        log.info("removed a stale admin socket", extra={"path": str(path)})
        return
    finally:
        probe.close()
    raise OSError(f"[admin] socket {str(path)!r}: another server is listening on it")


@dataclass
class AdminSocket:
    """A bound admin socket; ``close`` removes the file if it is still ours."""

    path: Path
    inode: int

    @property
    def target(self) -> str:
        """The gRPC target a client gives to reach it."""
        return f"unix:{self.path}"

    def close(self) -> None:
        try:
            if self.path.lstat().st_ino == self.inode:
                self.path.unlink()
        except OSError:
            pass


def bind(server: grpc.Server, path: Path) -> AdminSocket:
    """Add the admin socket at ``path`` to ``server`` (before ``server.start()``)."""
    if len(os.fsencode(str(path))) > MAX_PATH_BYTES:
        raise AdminSocketError(
            f"[admin] socket {str(path)!r} is over {MAX_PATH_BYTES} bytes: set a shorter [admin] socket"
        )
    if path.parent == default_dir():
        _private_dir(path.parent)
    _clear_stale(path)
    try:
        tmpdir = tempfile.mkdtemp(prefix=".sg", dir=path.parent)
    except OSError as exc:
        raise AdminSocketError(f"[admin] socket {str(path)!r}: {exc.strerror}") from exc
    try:
        tmp = Path(tmpdir) / "s"
        if server.add_insecure_port(f"unix:{tmp}") == 0:
            raise OSError(f"[admin] socket {str(path)!r}: cannot bind")
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return AdminSocket(path, path.lstat().st_ino)
