"""Durable store of user/admin reports ("this was spam / ham").

SQLite in WAL mode with ``synchronous=FULL``: a report is committed (and the
WAL fsynced) before ``add`` returns, so an acknowledgement the service sends
after ``add`` survives ``kill -9`` and power loss. Every report is kept as
history; the same (message, label, reporter) reported again is a no-op; the
latest report for a message is its label, except that an untrusted reporter
never overwrites a trusted one's label (``FeedbackStore.reports``).

Why SQLite over files+fsync: one fsync per report either way, but SQLite
gives the idempotency check, the history query and crash recovery for free.

Bounded (issue 16: ten reports of 5 MB messages grew a store from 6 to 62 MB):
a message is stored only up to ``max_message_bytes``, the bytes the parser
reads (``[limits] max_bytes``), so training sees exactly what it would have
seen; the whole store holds at most ``max_store_bytes`` of messages (default
1 GiB), beyond which new messages are refused with ``StoreFull`` (reports on
messages already stored still count). The reporter stored is the caller the
server authenticated; what the request claimed is kept beside it as a claim.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spamgate.model.errors import ErrorKind, ServiceError
from spamgate.model.labelled import LabelledMessage, Report, is_trusted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sha256 TEXT PRIMARY KEY,
    raw BLOB NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL REFERENCES messages(sha256),
    label TEXT NOT NULL CHECK (label IN ('spam', 'ham')),
    reporter TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    verdict TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_message ON reports(sha256, id);
"""
# Columns added after the first release, added to an older store on open: the authenticated
# caller's role (``service.api.access``; "admin" is trusted by the retrain gate) and the reporter
# name the request claimed (stored, never trusted).
_ADDED_COLUMNS = {"role": "TEXT", "claim": "TEXT NOT NULL DEFAULT ''"}
DEFAULT_MAX_STORE_BYTES = 1 << 30
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024


# What a report row costs in the store's byte budget: its variable fields plus a fixed allowance
# for the row's id, label, time and SQLite's overhead.
_ROW_OVERHEAD = 96
_ROW_BYTES = (
    f"LENGTH(verdict) + LENGTH(CAST(claim AS BLOB)) + LENGTH(CAST(reporter AS BLOB)) + {_ROW_OVERHEAD}"
)
# The verdict fields a report keeps: what the model said, not the whole verdict (a cached verdict
# with 1,000 long recipients was ~550 KB, stored again in every report row: issue 16 review).
_SUMMARY_KEYS = ("spam_probability", "action", "model_version", "policy_version", "verdict_id", "scanned")


def verdict_summary(verdict: dict[str, Any]) -> dict[str, Any]:
    """The few verdict fields a report row keeps (strings capped at 200 characters)."""
    out: dict[str, Any] = {}
    for key in _SUMMARY_KEYS:
        value = verdict.get(key)
        if isinstance(value, str):
            out[key] = value[:200]
        elif isinstance(value, bool | int | float):
            out[key] = value
    return out


class StoreFull(ServiceError):
    """The store holds ``max_store_bytes`` of messages: a new message is refused, not stored."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class BadReport(ServiceError, ValueError):
    """A report the store cannot take: an unknown label or an empty message (a ``ValueError`` as before)."""

    kind = ErrorKind.INVALID_ARGUMENT


@dataclass(frozen=True)
class StoredReport:
    """What ``add`` did."""

    sha256: str
    duplicate: bool
    report_id: int


class FeedbackStore:
    """Thread-safe; one connection guarded by a lock (writes are serialised anyway)."""

    def __init__(
        self,
        path: Path | str,
        max_store_bytes: int = DEFAULT_MAX_STORE_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_reporter_bytes: int = 0,
    ) -> None:
        if max_store_bytes <= 0 or max_message_bytes <= 0 or max_reporter_bytes < 0:
            raise ValueError("max_store_bytes and max_message_bytes must be > 0, max_reporter_bytes >= 0")
        self.path = Path(path)
        self.max_store_bytes = max_store_bytes
        self.max_message_bytes = max_message_bytes
        # One untrusted reporter may fill at most this much of the store (0: a quarter of it), so a
        # single token cannot make every later report RESOURCE_EXHAUSTED (issue 16 review: 60
        # reports a minute of 512 KiB fill 1 GiB in 34 minutes).
        self.max_reporter_bytes = max_reporter_bytes or max_store_bytes // 4
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Reported mail is users' mail: the database is the service's alone (it was 0644). Created
        # 0600 before SQLite opens it; SQLite gives its -wal and -shm files the database file's mode.
        # (Not a umask: that is process-wide, and the server's other threads create files too.)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        for suffix in ("", "-wal", "-shm"):
            f = Path(str(self.path) + suffix)
            if f.is_file() and not f.is_symlink():
                f.chmod(0o600)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(reports)").fetchall()}
        for name, decl in _ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE reports ADD COLUMN {name} {decl}")
        mcols = {r[1] for r in self._db.execute("PRAGMA table_info(messages)").fetchall()}
        if "added_by" not in mcols:
            self._db.execute("ALTER TABLE messages ADD COLUMN added_by TEXT NOT NULL DEFAULT ''")
        db = self._db
        self._bytes = int(db.execute("SELECT COALESCE(SUM(LENGTH(raw)), 0) FROM messages").fetchone()[0])
        self._bytes += int(db.execute(f"SELECT COALESCE(SUM({_ROW_BYTES}), 0) FROM reports").fetchone()[0])
        self._by_reporter: dict[str, int] = {
            str(who): int(n)
            for who, n in db.execute("SELECT added_by, SUM(LENGTH(raw)) FROM messages GROUP BY added_by")
        }
        self._lock = threading.Lock()

    @property
    def stored_bytes(self) -> int:
        """Bytes of stored messages and report rows (what ``max_store_bytes`` bounds)."""
        return self._bytes

    def add(
        self,
        raw: bytes,
        label: str,
        reporter: str = "",
        verdict: dict[str, Any] | None = None,
        role: str | None = None,
        claim: str = "",
    ) -> StoredReport:
        """Store a report durably; returns after the commit is on disk.

        reporter: who reported, as the server authenticated them; role: their role
        (``service.api.access``), None when anonymous; claim: the reporter name the
        request gave, kept for the admin, never trusted. Raises ``StoreFull`` when
        the report would take the store past ``max_store_bytes``, or a new message
        would take an untrusted reporter past ``max_reporter_bytes``.

        A reporter has one standing report per message: reporting it again replaces
        their earlier row (a reporter flipping a label back and forth grew the store
        by a row each time), and the same label again is a no-op.
        """
        if label not in ("spam", "ham"):
            raise BadReport(f"label must be 'spam' or 'ham', got {label!r}")
        if not raw:
            raise BadReport("empty message")
        digest = hashlib.sha256(raw).hexdigest()  # of the whole message: the verdict_id clients know
        kept = raw[: self.max_message_bytes]
        summary = json.dumps(verdict_summary(verdict or {}), sort_keys=True)
        row_bytes = len(summary) + len(claim.encode()) + len(reporter.encode()) + _ROW_OVERHEAD
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                known = cur.execute("SELECT 1 FROM messages WHERE sha256 = ?", (digest,)).fetchone()
                mine = cur.execute(
                    f"SELECT id, label, role, {_ROW_BYTES} FROM reports WHERE sha256 = ? AND reporter = ?"
                    " ORDER BY id DESC",
                    (digest, reporter),
                ).fetchall()
                if mine and mine[0][1] == label and mine[0][2] == role:
                    cur.execute("COMMIT")
                    return StoredReport(digest, True, int(mine[0][0]))
                freed = sum(int(r[3]) for r in mine)
                grow = row_bytes - freed + (0 if known else len(kept))
                if self._bytes + grow > self.max_store_bytes:
                    raise StoreFull(
                        f"the feedback store holds {self._bytes} bytes; the limit is "
                        f"{self.max_store_bytes} ([feedback] max_store_bytes)"
                    )
                quota = role != "admin" and not known
                if quota and self._by_reporter.get(reporter, 0) + len(kept) > self.max_reporter_bytes:
                    raise StoreFull(
                        f"{reporter} has stored {self._by_reporter.get(reporter, 0)} bytes of messages; the "
                        f"limit per reporter is {self.max_reporter_bytes} ([feedback] max_reporter_bytes)"
                    )
                if not known:
                    cur.execute(
                        "INSERT INTO messages(sha256, raw, first_seen, added_by) VALUES (?, ?, ?, ?)",
                        (digest, kept, now, reporter),
                    )
                if mine:
                    cur.execute("DELETE FROM reports WHERE sha256 = ? AND reporter = ?", (digest, reporter))
                cur.execute(
                    "INSERT INTO reports(sha256, label, reporter, reported_at, verdict, role, claim) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (digest, label, reporter, now, summary, role, claim),
                )
                rid = int(cur.lastrowid or 0)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self._bytes += grow
            if not known:
                self._by_reporter[reporter] = self._by_reporter.get(reporter, 0) + len(kept)
        return StoredReport(digest, False, rid)

    def history(self, sha256: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, label, reporter, reported_at, verdict, role, claim FROM reports"
                " WHERE sha256 = ? ORDER BY id",
                (sha256,),
            ).fetchall()
        return [
            {
                "id": r[0],
                "label": r[1],
                "reporter": r[2],
                "reported_at": r[3],
                "verdict": json.loads(r[4]),
                "role": r[5],
                "claim": r[6],
            }
            for r in rows
        ]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def reports(self, trusted: Collection[str] = ()) -> list[Report]:
        """Every reported message with the label that stands, in order of that label's report.

        The label that stands is the latest among reports of equal or higher
        trust: a report from an untrusted reporter never overwrites a trusted
        one's (issue 16: a self-declared reporter flipped an admin's SPAM label
        to HAM because a later label simply won). Trusted = named in
        ``trusted``, or stored with the ``admin`` role where the store records
        roles (``model.labelled.is_trusted``).
        """
        with self._lock:
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(reports)").fetchall()}
            role = "r.role" if "role" in cols else "NULL"
            rows = self._db.execute(
                f"SELECT r.sha256, r.label, r.id, r.reporter, {role} FROM reports r ORDER BY r.id"
            ).fetchall()
        standing: dict[str, tuple[str, int, str, bool]] = {}
        for digest, label, rid, reporter, rrole in rows:
            trust = is_trusted(reporter, trusted, rrole)
            held = standing.get(digest)
            if held is None or trust or not held[3]:
                standing[digest] = (label, int(rid), reporter, trust)
        out = []
        with self._lock:
            for digest, (label, rid, reporter, trust) in sorted(standing.items(), key=lambda kv: kv[1][1]):
                row = self._db.execute("SELECT raw FROM messages WHERE sha256 = ?", (digest,)).fetchone()
                if row is None or not isinstance(row[0], bytes):
                    # Only a damaged or hand-edited store: add() writes both rows in one transaction.
                    raise sqlite3.DatabaseError(f"report {rid}: message {digest} is missing or not bytes")
                (raw,) = row
                msg = LabelledMessage(1 if label == "spam" else 0, bytes(raw), f"feedback:{digest}", rid)
                out.append(Report(msg, reporter, trust))
        return out

    def labelled(self, trusted: Collection[str] = ()) -> Iterator[LabelledMessage]:
        """Every reported message with the label that stands (see ``reports``), in report order."""
        for r in self.reports(trusted):
            yield r.message

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RecentMessages:
    """Bounded cache of recently classified messages by verdict id, for reports by id.

    Bounded by count and by the total bytes of the messages held (a message may be
    25 MiB, so a count alone bounds nothing); the oldest go first. A message larger
    than the whole byte budget is not kept.
    """

    def __init__(self, capacity: int = 1000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, dict[str, Any]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def put(self, verdict_id: str, raw: bytes, verdict: dict[str, Any]) -> None:
        if self.capacity <= 0 or len(raw) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(verdict_id, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._items[verdict_id] = (raw, verdict)
            self._bytes += len(raw)
            while len(self._items) > self.capacity or self._bytes > self.max_bytes:
                _, (gone, _) = self._items.popitem(last=False)
                self._bytes -= len(gone)

    def get(self, verdict_id: str) -> tuple[bytes, dict[str, Any]] | None:
        with self._lock:
            return self._items.get(verdict_id)
