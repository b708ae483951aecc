"""Read the SQLite sink's ``events`` table back, read-only: the table the demo's page reads.

One row per uuid (a re-delivery bumps ``receipts``), in the order the rows
were inserted (``rowid``). The database is opened read-only (``mode=ro``):
the tail never creates a database, a table or a WAL file, and a writer is
never blocked by it (WAL mode). ``--follow`` looks for rows past the last
one read every ``poll`` seconds.
"""
from __future__ import annotations

import sqlite3
import threading
import urllib.parse
from typing import List, Mapping

from ...errors import ConfigError
from . import CAUGHT_UP, Events, Reader, RowPosition, TailedEvent, TailRequest, UnreadableSink

__all__ = ["SQLiteReader"]

_COLUMNS = "rowid, uuid, version, received_ms, receipts, raw"


class SQLiteReader(Reader):
    """The SQLite sink's database file, read back.

    :param poll: seconds between looks for new rows with ``follow``.
    """

    def __init__(self, path: str, busy_timeout: float = 2.5, poll: float = 0.5) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.poll = poll

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> "SQLiteReader":
        """From the collector's ``sqlite.*`` options (prefix stripped).

        Without ``sqlite.path``, the collector's own default:
        ``$STATE_DIRECTORY/events.sqlite3``.

        :raises ConfigError: no path (and no ``$STATE_DIRECTORY``), or ``:memory:``.
        """
        from ..service.settings import parse_float
        from ..sinks.sqlite import DEFAULT_BUSY_TIMEOUT, MEMORY, default_path

        path = options.get("path", "").strip() or default_path()
        if path == MEMORY:
            raise ConfigError("sqlite.path", "a :memory: database lives only inside the "
                              "collector's process; give its database file, e.g. --option "
                              "sqlite.path=/var/lib/baseplate-events/events.sqlite3")
        return cls(path, parse_float("sqlite.busy_timeout",
                                     options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT)))

    def events(self, request: TailRequest,
               stop: threading.Event) -> Events:
        db = self._connect()
        try:
            if request.last is None:
                rows = self._query(db, f"SELECT {_COLUMNS} FROM events ORDER BY rowid", ())
            else:
                rows = self._query(db, f"SELECT * FROM (SELECT {_COLUMNS} FROM events ORDER BY "
                                       "rowid DESC LIMIT ?) ORDER BY rowid", (request.last,))
            newest = 0
            for row in rows:
                newest = row[0]
                yield _event(row)
            yield CAUGHT_UP
            while request.follow and not stop.wait(self.poll):
                rows = self._query(db, f"SELECT {_COLUMNS} FROM events WHERE rowid > ? "
                                       "ORDER BY rowid", (newest,))
                for row in rows:
                    newest = row[0]
                    yield _event(row)
                if rows:
                    yield CAUGHT_UP
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        uri = "file:" + urllib.parse.quote(self.path) + "?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout,
                                 check_same_thread=False)
            db.execute("SELECT 1 FROM events LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise UnreadableSink(self._problem(exc)) from None
        return db

    def _problem(self, exc: sqlite3.Error) -> str:
        text = str(exc)
        if "no such table" in text:
            return (f"sqlite.path: {self.path} has no events table: it is not a collector's "
                    "database (or the collector has not started on it yet)")
        if "unable to open" in text:
            return (f"sqlite.path: cannot open {self.path} read-only: {text} (is it the "
                    "collector's sqlite.path, and may this user read it and its directory?)")
        return f"sqlite: cannot read {self.path}: {type(exc).__name__}: {text}"

    def _query(self, db: sqlite3.Connection, query: str, parameters: tuple) -> List[tuple]:
        try:
            return db.execute(query, parameters).fetchall()
        except sqlite3.Error as exc:
            raise UnreadableSink(self._problem(exc)) from None


def _event(row: tuple) -> TailedEvent:
    rowid, uuid, version, received_ms, receipts, raw = row
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    return TailedEvent(uuid, "v" + version, received_ms, data, RowPosition(rowid, receipts))
