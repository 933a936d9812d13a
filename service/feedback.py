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
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.corpora import LabelledMessage
from training.reports import Report, is_trusted

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
# caller's role (``service.access``; "admin" is trusted by the retrain gate) and the reporter
# name the request claimed (stored, never trusted).
_ADDED_COLUMNS = {"role": "TEXT", "claim": "TEXT NOT NULL DEFAULT ''"}
DEFAULT_MAX_STORE_BYTES = 1 << 30
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024


class StoreFull(Exception):
    """The store holds ``max_store_bytes`` of messages: a new message is refused, not stored."""


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
    ) -> None:
        if max_store_bytes <= 0 or max_message_bytes <= 0:
            raise ValueError("max_store_bytes and max_message_bytes must be > 0")
        self.path = Path(path)
        self.max_store_bytes = max_store_bytes
        self.max_message_bytes = max_message_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(reports)").fetchall()}
        for name, decl in _ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE reports ADD COLUMN {name} {decl}")
        total = self._db.execute("SELECT COALESCE(SUM(LENGTH(raw)), 0) FROM messages").fetchone()[0]
        self._bytes = int(total)
        self._lock = threading.Lock()

    @property
    def stored_bytes(self) -> int:
        """Bytes of stored messages (what ``max_store_bytes`` bounds)."""
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
        (``service.access``), None when anonymous; claim: the reporter name the
        request gave, kept for the admin, never trusted. Raises ``StoreFull`` for a
        new message that would take the store past ``max_store_bytes``.
        """
        if label not in ("spam", "ham"):
            raise ValueError(f"label must be 'spam' or 'ham', got {label!r}")
        if not raw:
            raise ValueError("empty message")
        digest = hashlib.sha256(raw).hexdigest()  # of the whole message: the verdict_id clients know
        kept = raw[: self.max_message_bytes]
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                known = cur.execute("SELECT 1 FROM messages WHERE sha256 = ?", (digest,)).fetchone()
                if known is None:
                    if self._bytes + len(kept) > self.max_store_bytes:
                        raise StoreFull(
                            f"the feedback store holds {self._bytes} bytes of messages; the limit is "
                            f"{self.max_store_bytes} ([feedback] max_store_bytes)"
                        )
                    cur.execute(
                        "INSERT INTO messages(sha256, raw, first_seen) VALUES (?, ?, ?)", (digest, kept, now)
                    )
                last = cur.execute(
                    "SELECT id, label, reporter, role FROM reports WHERE sha256 = ? ORDER BY id DESC LIMIT 1",
                    (digest,),
                ).fetchone()
                if last is not None and last[1] == label and last[2] == reporter and last[3] == role:
                    cur.execute("COMMIT")
                    return StoredReport(digest, True, int(last[0]))
                cur.execute(
                    "INSERT INTO reports(sha256, label, reporter, reported_at, verdict, role, claim) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (digest, label, reporter, now, json.dumps(verdict or {}), role, claim),
                )
                if known is None:
                    self._bytes += len(kept)
                rid = int(cur.lastrowid or 0)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
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
        roles (``training.reports.is_trusted``).
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
                (raw,) = self._db.execute("SELECT raw FROM messages WHERE sha256 = ?", (digest,)).fetchone()
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
