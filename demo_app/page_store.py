"""The demo collector's SQLite store: the library's sink plus what the page reads.

:class:`PageStore` is :class:`~baseplate_events.collector.sinks.sqlite.SQLiteSink`
with more kept in the same file, for ``GET /``, ``/api/events`` and
``/api/stats`` (:mod:`demo_app.collector_api`):

- the columns ``source``, ``action``, ``noun`` and ``timestamp_ms`` of each
  event, filled from the fields of those names (``client_timestamp`` for the
  time; v1: ``event_topic``, ``event_type``, ``event_ts``) where the event has
  them, for the page's counts and delays;
- a journal: the collector's answers by status (``responses``) and the latest
  refused events with their reasons (``refused``), which the collector tells
  every sink of (:meth:`~baseplate_events.collector.sinks.Sink.count_response`,
  :meth:`~baseplate_events.collector.sinks.Sink.record_refusals`);
- the reads behind the page and the API.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from baseplate_events.collector.sinks import StoredEvent
from baseplate_events.collector.sinks.sqlite import SQLiteSink
from baseplate_events.collector.sinks.sqlite import create as create_sqlite

__all__ = ["KEEP_REFUSED", "EventCursor", "EventPage", "PageStore", "create"]

#: milliseconds the page's tallies of answers and refusals wait for the database
JOURNAL_WAIT_MS = 100
#: refused events kept for the page and the API (the oldest go first)
KEEP_REFUSED = 1000
_LABELS = {"1": ("event_topic", "event_type", None, "event_ts")}
_V2_LABELS = ("source", "action", "noun", "client_timestamp")
_JOURNAL = """
CREATE TABLE IF NOT EXISTS responses (
    status INTEGER PRIMARY KEY,
    count  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    stream      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    uuid        TEXT,
    reason      TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class EventCursor:
    """Where a newest-first listing stopped; the next page holds the events stored before it.

    It is the row's place in the order of storage (SQLite's rowid), which a
    later event never takes: paging on from a cursor neither repeats nor skips
    an event, however many arrive meanwhile. ``str(cursor)`` is its text, the
    ``next`` of ``/api/events``; :meth:`parse` reads it back from ``?before=``.
    (``VACUUM`` may renumber the rows: a cursor is for one walk through a file.)
    """

    position: int

    def __str__(self) -> str:
        return str(self.position)

    @classmethod
    def parse(cls, text: str) -> "EventCursor":
        """The cursor whose text is ``text``.

        :raises ValueError: ``text`` is not the ``next`` of an earlier page.
        """
        if not (text.isascii() and text.isdigit() and len(text) <= 19
                and 0 < int(text) < 1 << 63):  # a rowid is a signed 64-bit integer
            raise ValueError(f"before: expected the 'next' cursor of an earlier page "
                             f"(a whole number above 0), got {text[:40]!r}")
        return cls(int(text))


class EventPage(NamedTuple):
    """A page of stored events, newest first, and the cursor of the next (older) page."""

    events: List[Dict[str, Any]]
    next: Optional[EventCursor]  # None: this page holds the oldest event

def _storable(text: Optional[str]) -> Optional[str]:
    """``text`` with what SQLite cannot hold (a lone surrogate, from a refused event's
    own uuid or reason) replaced."""
    return None if text is None else text.encode("utf-8", "replace").decode("utf-8")


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _storable(text: Optional[str]) -> Optional[str]:
    """``text`` with what SQLite cannot hold (a lone surrogate, from a refused event's
    own uuid or reason) replaced."""
    return None if text is None else text.encode("utf-8", "replace").decode("utf-8")


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


class PageStore(SQLiteSink):
    """The SQLite sink with the page's columns, its journal and its reads; thread-safe."""

    extra_columns = ("source TEXT", "action TEXT", "noun TEXT", "timestamp_ms INTEGER")
    extra_schema = _JOURNAL

    def extra_values(self, event: StoredEvent) -> Tuple[Any, ...]:
        """``source``, ``action``, ``noun`` and ``timestamp_ms`` from the event's named fields."""
        named = event.named
        if named is None:
            return (None, None, None, None)
        keys = _LABELS.get(event.version, _V2_LABELS)
        labels = tuple(named.get(key) if key else "" for key in keys)
        timestamp = labels[3] if type(labels[3]) is int else None
        return (_text(labels[0]), _text(labels[1]), _text(labels[2]), timestamp)

    # -- the journal: what the app refused, and how it answered -------------------

    @contextmanager
    def _journal_write(self) -> Iterator[None]:
        """The page's tallies: best effort, so they wait briefly for the database, never
        as long as a batch, and never leave a transaction open."""
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout = {JOURNAL_WAIT_MS}")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    def count_response(self, status: int) -> None:
        """Tally one HTTP answer, so the page can show what was refused and why."""
        with self._journal_write():
            self._db.execute(
                "INSERT INTO responses (status, count) VALUES (?, 1)"
                " ON CONFLICT (status) DO UPDATE SET count = count + 1",
                (status,),
            )

    def record_refusals(self, stream: str, refusals: Sequence[Mapping[str, Any]],
                        received_ms: int) -> None:
        """Keep the latest refused events, with their reasons, for the page and the API."""
        rows = [(received_ms, stream, r["index"], _storable(r.get("uuid")),
                 _storable(str(r["reason"])))
                for r in refusals[:KEEP_REFUSED]]
        with self._journal_write():
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO refused (received_ms, stream, position, uuid,"
                                 " reason) VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("DELETE FROM refused WHERE id <= (SELECT MAX(id) FROM refused) - ?",
                             (KEEP_REFUSED,))
            self._db.execute("COMMIT")

    # -- reading, for the page and the API ------------------------------------------

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
            refused = self._db.execute("SELECT COUNT(*) FROM refused").fetchone()[0]
        return {
            "total": total,
            "duplicates": receipts - total,
            "counts": counts,
            "responses": responses,
            "refused": refused,
        }

    def events(
        self, limit: Optional[int] = None, latest_first: bool = False, fields: bool = False
    ) -> List[Dict[str, Any]]:
        """Stored events, oldest first (or latest first); with ``fields``, their documents too.

        ``fields`` is the generic document (field id → value, v2 only) and
        ``named`` the document by field names (v1, or v2 with a schema), else None.
        """
        order = "DESC" if latest_first else "ASC"
        extra = ", fields, named" if fields else ""
        query = (
            "SELECT uuid, version, source, action, noun, timestamp_ms, received_ms, receipts"
            f"{extra} FROM events ORDER BY received_ms {order}, rowid {order}"
        )
        parameters: tuple = ()
        if limit is not None:
            query += " LIMIT ?"
            parameters = (limit,)
        with self._lock:
            rows = [dict(row) for row in self._db.execute(query, parameters)]
        if fields:
            for row in rows:
                row["fields"] = json.loads(row["fields"])
                row["named"] = None if row["named"] is None else json.loads(row["named"])
        return rows

    def newest_events(self, limit: Optional[int] = None, before: Optional[EventCursor] = None
                      ) -> EventPage:
        """Stored events, the last stored first, with their documents (as :meth:`events`).

        :param limit: at most this many, at least 1 (None: every one).
        :param before: only the events stored before this cursor (the ``next``
            of the page before).
        :raises ValueError: ``limit`` is below 1.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"limit: expected at least 1 event, got {limit}")
        query = ("SELECT rowid AS position, uuid, version, source, action, noun, timestamp_ms,"
                 " received_ms, receipts, fields, named FROM events")
        parameters: List[int] = []
        if before is not None:
            query += " WHERE rowid < ?"
            parameters.append(before.position)
        query += " ORDER BY rowid DESC"
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(limit + 1)  # one more: is there a next page?
        with self._lock:
            rows = [dict(row) for row in self._db.execute(query, parameters)]
        cursor = None
        if limit is not None and len(rows) > limit:
            del rows[limit:]
            cursor = EventCursor(rows[-1]["position"])
        for row in rows:
            del row["position"]
            row["fields"] = json.loads(row["fields"])
            row["named"] = None if row["named"] is None else json.loads(row["named"])
        return EventPage(rows, cursor)

    def stream_counts(self) -> List[Dict[str, Any]]:
        """Stored events per stream (``v1``, ``v2``, ``v2j``), source and action, most first."""
        with self._lock:
            return [dict(row) for row in self._db.execute(
                "SELECT 'v' || version AS stream, source, action, COUNT(*) AS count FROM events"
                " GROUP BY version, source, action ORDER BY count DESC, stream, source, action")]

    def delays(self, latest: int) -> List[int]:
        """Milliseconds from put (the event's timestamp) to stored, of the last ``latest`` stored.

        Events without a timestamp are left out; a negative delay is a client
        clock ahead of the collector's.
        """
        with self._lock:
            return [row[0] for row in self._db.execute(
                "SELECT received_ms - timestamp_ms FROM (SELECT received_ms, timestamp_ms"
                " FROM events ORDER BY rowid DESC LIMIT ?) WHERE timestamp_ms IS NOT NULL",
                (latest,))]

    def refusals(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The latest refused events first: when, stream, position in its batch, uuid, reason."""
        query = ("SELECT received_ms, stream, position AS \"index\", uuid, reason FROM refused"
                 " ORDER BY id DESC")
        parameters: tuple = ()
        if limit is not None:
            query += " LIMIT ?"
            parameters = (limit,)
        with self._lock:
            return [dict(row) for row in self._db.execute(query, parameters)]

    def document(self, event_uuid: str) -> Optional[str]:
        """The JSON of one stored event as it arrived, or None."""
        with self._lock:
            row = self._db.execute("SELECT raw FROM events WHERE uuid = ?",
                                   (event_uuid,)).fetchone()
        return None if row is None else str(row["raw"])


def create(options: Mapping[str, str]) -> PageStore:
    """The store from the SQLite sink's settings (``path``, ``busy_timeout``), as ``sink = sqlite``.

    :raises ConfigError: no path and no ``$STATE_DIRECTORY``, or a bad option.
    """
    return create_sqlite(options, PageStore)
