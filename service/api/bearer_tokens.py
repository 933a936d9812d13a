"""Bearer tokens for TCP callers: ``[auth] tokens_file``, one ``ROLE TOKEN [NAME]`` per line.

The file must not be readable or writable by other users (a token is a password).
Presented tokens are compared with ``hmac.compare_digest`` on SHA-256 digests (equal
lengths, so the comparison time says nothing about how much of a token matched),
against every entry without stopping early. The file is re-read when it changes
(inode, mtime or size); a changed file with an error is logged and the previous
table stays in force, as a bad policy file does (``service.policy.policy_file``), so a
typo never locks every gateway out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from spamgate.model.errors import ConfigurationError

log = logging.getLogger("spamgate.tokens")

ROLES = ("admin", "reporter", "client")
# 16 characters of a random token are ~96 bits base64; shorter ones are guessable by brute force.
MIN_TOKEN_CHARS = 16


class TokensError(ConfigurationError, ValueError):
    """Problems with a tokens file, each naming file and line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class TokenEntry:
    role: str
    name: str  # the NAME column, or "line N": what the audit log shows, never the token
    digest: bytes


def file_mode_error(path: Path, what: str) -> str | None:
    """Why ``path`` is too open for a secret (others may read or write it), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"{what} {str(path)!r}: cannot read: {exc.strerror}"
    if mode & (stat.S_IRWXO | stat.S_IWGRP):
        return (
            f"{what} {str(path)!r} is open to other users (mode {stat.S_IMODE(mode):04o}):"
            f" chmod 600 (or 640 for a group that runs the clients)"
        )
    return None


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(path: Path) -> list[TokenEntry]:
    """Every entry of the file; raises ``TokensError`` listing all problems."""
    what = "[auth] tokens_file"
    problem = file_mode_error(path, what)
    if problem:
        raise TokensError([problem])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensError([f"{what} {str(path)!r}: cannot read: {exc}"]) from exc
    # A file caught mid-write: emptied (``>`` truncates first, as does a full disk) revoked every
    # token at the next call, and cut inside a token took the prefix left (18 of 24 characters) as
    # a token of that role (adversarial review). As with policy and list files, both are refused;
    # a file holding only comments is meant (every token revoked) and is taken.
    if not text.strip():
        raise TokensError([f"{what} {str(path)!r} is empty (to revoke every token, leave a # comment)"])
    if not text.endswith("\n"):
        raise TokensError(
            [
                f"{what} {path.name}:{text.count(chr(10)) + 1}: the last line has no newline at its end: "
                "the file may have been cut short while being written; refused"
            ]
        )
    errors: list[str] = []
    entries: list[TokenEntry] = []
    seen: set[bytes] = set()
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{what} {path.name}:{n}"
        if len(words) not in (2, 3):
            errors.append(f"{where}: want ROLE TOKEN [NAME], got {len(words)} words")
            continue
        role, token = words[0], words[1]
        if role not in ROLES:
            errors.append(f"{where}: unknown role {role!r} (roles: {', '.join(ROLES)})")
        if len(token) < MIN_TOKEN_CHARS:
            errors.append(f"{where}: the token is {len(token)} characters; at least {MIN_TOKEN_CHARS}")
        if not token.isascii() or not token.isprintable():
            errors.append(f"{where}: the token must be printable ASCII (it travels in gRPC metadata)")
        d = digest(token)
        if d in seen:
            errors.append(f"{where}: the same token is on an earlier line")
        seen.add(d)
        entries.append(TokenEntry(role, words[2] if len(words) == 3 else f"line {n}", d))
    if errors:
        raise TokensError(errors)
    return entries


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1, -1)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class TokenTable:
    """The tokens of ``path``, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        self._entries = parse_tokens(path)  # raises TokensError: a configuration error at start

    def _refresh(self) -> list[TokenEntry]:
        with self._lock:
            stamp = _stamp(self.path)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._entries = parse_tokens(self.path)
                    log.info(
                        "tokens file reloaded", extra={"path": str(self.path), "tokens": len(self._entries)}
                    )
                except TokensError as exc:
                    log.error(
                        "tokens file changed but has errors; the previous tokens stay",
                        extra={"path": str(self.path), "errors": exc.errors},
                    )
            return self._entries

    def lookup(self, presented: str) -> TokenEntry | None:
        """The entry whose token is ``presented``, or None."""
        want = digest(presented)
        found = None
        for entry in self._refresh():
            if hmac.compare_digest(entry.digest, want):
                found = entry  # no early exit: every entry is compared
        return found


def read_token_file(path: str) -> str:
    """A client's token: the first non-empty line of ``path`` (which others may not read)."""
    p = Path(path)
    problem = file_mode_error(p, "token_file")
    if problem:
        raise TokensError([problem])
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensError([f"token_file {path!r}: cannot read: {exc}"]) from exc
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token:
        raise TokensError([f"token_file {path!r} is empty"])
    return token
