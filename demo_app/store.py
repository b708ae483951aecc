"""The reference collector's storage: accepted events in SQLite, one row per uuid.

The publisher delivers at least once, so the same event may arrive twice (a
retry after a lost response, a replay from its spool). The uuid is the primary
key: a second copy only bumps ``receipts``, which is how a test tells "arrived
exactly once" from "arrived, and again".
"""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional

from .batches import StoredEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    uuid         TEXT PRIMARY KEY,
    version      TEXT NOT NULL,
    source       TEXT NOT NULL,
    action       TEXT NOT NULL,
    noun         TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL,
    receipts     INTEGER NOT NULL DEFAULT 1,
    document     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events (received_ms);
CREATE TABLE IF NOT EXISTS responses (
    status INTEGER PRIMARY KEY,
    count  INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class StoreResult:
    """What one accepted batch did to the store."""

    accepted: int
    duplicates: int


class EventStore:
    """A thread-safe SQLite store of events keyed by uuid.

    One connection behind a lock: the collector's handler threads write small
    batches, and a single writer is what SQLite wants anyway.

    :param path: a database file, or ``":memory:"`` (the default) for tests.
    """

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def add(self, events: Iterable[StoredEvent], received_ms: int) -> StoreResult:
        """Store a batch atomically; events already present count as duplicates."""
        accepted = duplicates = 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for event in events:
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO events (uuid, version, source, action, noun,"
                        " timestamp_ms, received_ms, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            event.uuid,
                            event.version,
                            event.source,
                            event.action,
                            event.noun,
                            event.timestamp_ms,
                            received_ms,
                            event.document,
                        ),
                    )
                    if cursor.rowcount == 1:
                        accepted += 1
                    else:
                        duplicates += 1
                        self._db.execute(
                            "UPDATE events SET receipts = receipts + 1 WHERE uuid = ?",
                            (event.uuid,),
                        )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return StoreResult(accepted, duplicates)

    def count_response(self, status: int) -> None:
        """Tally one HTTP answer, so the page can show what was refused and why."""
        with self._lock:
            self._db.execute(
                "INSERT INTO responses (status, count) VALUES (?, 1)"
                " ON CONFLICT (status) DO UPDATE SET count = count + 1",
                (status,),
            )

    def summary(self) -> Dict[str, Any]:
        """Totals: events, duplicate receipts, counts per source and action, answers by status."""
        with self._lock:
            total, receipts = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(receipts), 0) FROM events"
            ).fetchone()
            counts = [
                {"source": row["source"], "action": row["action"], "count": row["n"]}
                for row in self._db.execute(
                    "SELECT source, action, COUNT(*) AS n FROM events"
                    " GROUP BY source, action ORDER BY n DESC, source, action"
                )
            ]
            responses = {
                str(row["status"]): row["count"]
                for row in self._db.execute("SELECT status, count FROM responses ORDER BY status")
            }
        return {
            "total": total,
            "duplicates": receipts - total,
            "counts": counts,
            "responses": responses,
        }

    def events(
        self, limit: Optional[int] = None, latest_first: bool = False
    ) -> List[Dict[str, Any]]:
        """Stored events, oldest first (or latest first), without their documents."""
        order = "DESC" if latest_first else "ASC"
        query = (
            "SELECT uuid, version, source, action, noun, timestamp_ms, received_ms, receipts"
            f" FROM events ORDER BY received_ms {order}, rowid {order}"
        )
        parameters: tuple = ()
        if limit is not None:
            query += " LIMIT ?"
            parameters = (limit,)
        with self._lock:
            return [dict(row) for row in self._db.execute(query, parameters)]

    def document(self, event_uuid: str) -> Optional[str]:
        """The JSON of one stored event as it arrived, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT document FROM events WHERE uuid = ?", (event_uuid,)
            ).fetchone()
        return None if row is None else str(row["document"])

    def close(self) -> None:
        with self._lock:
            self._db.close()
