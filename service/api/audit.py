"""The audit log of admin calls: one JSON object per line, appended, never a message body.

Each line: ``time`` (UTC, ISO 8601), ``who`` (role, identity, peer), ``method`` and its
key arguments (``args``: the version activated; a report's label, reporter, verdict_id
and message size), ``result`` ("OK" or the gRPC status name) with ``details`` for a
refusal or error, and ``outcome`` for a success (the policy version now in force, the
stored message's sha256). Refused admin calls are recorded too.

Where: ``[admin] audit_log``; by default ``spamgate-audit.jsonl`` beside the ``[feedback]
db`` (the reports it records are there), else in the ``[model] registry`` folder (beside
its HISTORY of activations), else records on the ``spamgate.audit`` logger (stderr).
The file is opened for each record (O_APPEND, created 0600: reporter names and
principals are not for everyone), written in one ``write`` and fsynced before the
call is answered; opening it each time follows a file rotated by logrotate at once.
Refusals are written at most ``REFUSALS_PER_SECOND`` a second (the next one written
counts those left out, ``suppressed``): anyone who can reach the TCP port can be
refused, and must not be able to make the server fsync without limit.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spamgate.service.runtime.config import Config
from spamgate.service.runtime.logs import capped

log = logging.getLogger("spamgate.audit")

AUDIT_FILE = "spamgate-audit.jsonl"
MAX_VALUE_CHARS = 256  # every string a client sent is cut here (a reporter is at most 256 anyway)
REFUSALS_PER_SECOND = 10


def audit_path(cfg: Config) -> Path | None:
    """Where the audit lines go (None: the ``spamgate.audit`` logger)."""
    if cfg.admin.audit_log:
        return Path(cfg.admin.audit_log)
    if cfg.feedback.db:
        return Path(cfg.feedback.db).parent / AUDIT_FILE
    if cfg.model.registry:
        return Path(cfg.model.registry) / AUDIT_FILE
    return None


def path_errors(cfg: Config) -> list[str]:
    """An audit file that cannot be appended to is a configuration error, found at start."""
    path = audit_path(cfg)
    if path is None:
        return []
    key = "[admin] audit_log" if cfg.admin.audit_log else f"[admin] audit_log (default {str(path)!r})"
    if path.exists():
        if not path.is_file() or not os.access(path, os.W_OK):
            return [f"{key}: {str(path)!r} is not a file this user can append to"]
        return []
    folder = path.parent
    if cfg.admin.audit_log and not folder.is_dir():
        return [f"{key}: no folder {str(folder)!r}"]
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return [f"{key}: cannot create a file in {str(folder)!r} (permission)"]
    return []  # a default folder that does not exist yet is made by the feedback store or registry


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return capped(value, MAX_VALUE_CHARS)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class AuditLog:
    """Appends audit records to ``path`` (or the logger when None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._refusal_second = 0
        self._refusals = 0  # written in the current second
        self._suppressed = 0

    def _admit_refusal(self) -> int | None:
        """None when this refusal is not written; else how many were left out before it."""
        now = int(time.monotonic())
        with self._lock:
            if now != self._refusal_second:
                self._refusal_second, self._refusals = now, 0
            if self._refusals >= REFUSALS_PER_SECOND:
                self._suppressed += 1
                return None
            self._refusals += 1
            suppressed, self._suppressed = self._suppressed, 0
            return suppressed

    def record(
        self,
        who: dict[str, Any],
        method: str,
        args: dict[str, Any],
        result: str,
        details: str = "",
        outcome: dict[str, Any] | None = None,
        refused: bool = False,
    ) -> None:
        suppressed = self._admit_refusal() if refused else 0
        if suppressed is None:
            return
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "who": _clean(who),
            "method": method,
            "args": _clean(args),
            "result": result,
        }
        if details:
            entry["details"] = capped(details, 500)
        if outcome:
            entry["outcome"] = _clean(outcome)
        if suppressed:
            entry["suppressed"] = suppressed  # refusals left out before this one (rate limit)
        if self.path is None:
            log.info("admin call", extra={"audit": entry})
            return
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        try:
            with self._lock:
                # O_NOFOLLOW: a symlink planted in the log's folder must not point the appends
                # at another file (issue 16 review); and only a regular file is an audit log.
                fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
                )
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise OSError(f"{self.path} is not a regular file")
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            # The call itself went through; losing its record must not go unnoticed.
            log.error(
                "cannot write the audit log",
                extra={"path": str(self.path), "error": str(exc), "audit": entry},
            )


_LABELS = {1: "spam", 2: "ham"}  # FeedbackLabel numbers (spamgate.proto)


def call_args(method: str, request: Any) -> dict[str, Any]:
    """The key arguments of an admin call; a report's message only by its size."""
    if request is None:
        return {}
    if method == "ActivateModel":
        return {"version": request.version}
    if method == "ReportFeedback":
        return {
            "label": _LABELS.get(request.label, str(request.label)),
            "reporter": request.reporter,
            "verdict_id": request.verdict_id,
            "message_bytes": len(request.message),
        }
    return {}


def call_outcome(method: str, response: Any) -> dict[str, Any]:
    """What a successful admin call changed."""
    if method == "ActivateModel":
        return {"model_version": response.model_version}
    if method == "ReloadPolicy":
        return {
            "reloaded": response.reloaded,
            "policy_version": response.version,
            "errors": len(response.errors),
        }
    if method == "ReportFeedback":
        return {"message_sha256": response.message_sha256, "duplicate": response.duplicate}
    return {}
