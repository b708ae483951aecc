"""The SQLite sink: accepted events in one database file, one row per uuid.

The embedded default (``sink = sqlite``, ``sqlite.path = FILE``), what the
demo's page and ``/api/events`` read. Every gunicorn worker opens the same
file (WAL mode, so readers never wait for the writer; a writer waits up to
``sqlite.busy_timeout`` seconds, default 2.5, for another, then the batch is
answered 503: under the publisher's 3 s timeout, so that it hears why).

The file is created 0600 whatever the umask (its WAL files follow); an existing
one that is a symlink, or that another user owns or can write, is refused. The
collector acknowledges only what is on disk, so the file is required:
without ``sqlite.path`` it is ``$STATE_DIRECTORY/events.sqlite3`` where
systemd sets ``STATE_DIRECTORY`` (``StateDirectory=`` in the unit), and the
collector refuses to start otherwise. ``sqlite.path = :memory:`` keeps events
in the process only, for tests: it must be asked for by name, and a warning
at start says that acknowledged events die with the process.

The publisher delivers at least once, so the same event may arrive twice (a
retry after a lost response, a replay from its spool). The canonical uuid is
the primary key: a second copy only bumps ``receipts``, which is how a test
tells "arrived exactly once" from "arrived, and again".

Each row keeps the event as received (``raw``), its generic document (fields
by id) and, with a schema, the document by field names. ``source``,
``action``, ``noun`` and ``timestamp_ms`` are filled, for the page's counts,
from the fields of those names (``client_timestamp`` for the time; v1:
``event_topic``, ``event_type``, ``event_ts``) where the event has them.

A batch is one transaction. A value SQLite cannot store (an integer past 64
bits, a string holding a lone surrogate) is that event's refusal, and nothing
of the batch is kept; a database that is locked past ``sqlite.busy_timeout``,
read-only, not permitted, full, unreadable or gone is :class:`SinkUnavailable`
(503). Any other SQLite error is a bug, left to the app's 500.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ...errors import ConfigError
from ..settings import COLLECTOR_SETTINGS, sink_options
from . import DUPLICATE, STORED, Outcome, Sink, SinkUnavailable, StoredEvent

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "EventCursor",
    "EventPage",
    "SQLiteSink",
    "create",
    "default_path",
]

logger = logging.getLogger(__name__)

#: seconds a batch waits for the database (another worker's write, a lock)
DEFAULT_BUSY_TIMEOUT: float = COLLECTOR_SETTINGS["sqlite.busy_timeout"].default
#: milliseconds the page's tallies of answers and refusals wait for it
JOURNAL_WAIT_MS = 100
MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    uuid         TEXT PRIMARY KEY,
    version      TEXT NOT NULL,
    source       TEXT,
    action       TEXT,
    noun         TEXT,
    timestamp_ms INTEGER,
    received_ms  INTEGER NOT NULL,
    receipts     INTEGER NOT NULL DEFAULT 1,
    raw          TEXT NOT NULL,
    fields       TEXT NOT NULL,
    named        TEXT
);
CREATE INDEX IF NOT EXISTS events_received ON events (received_ms);
CREATE TABLE IF NOT EXISTS responses (
    status INTEGER PRIMARY KEY,
    count  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
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
#: refused events kept for the page and the API (the oldest go first)
KEEP_REFUSED = 1000
_INSERT = (
    "INSERT OR IGNORE INTO events (uuid, version, source, action, noun, timestamp_ms,"
    " received_ms, raw, fields, named) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LABELS = {"1": ("event_topic", "event_type", None, "event_ts")}
_V2_LABELS = ("source", "action", "noun", "client_timestamp")
#: what a per-event value error looks like when SQLite binds it
_VALUE_ERRORS = (OverflowError, UnicodeEncodeError, ValueError, sqlite3.InterfaceError)
#: SQLite's primary result codes that say the database cannot take a batch now: its
#: infrastructure (a lock held past the busy timeout, a read-only or full disk, a file
#: not permitted, unreadable or gone), not the batch
_UNAVAILABLE = frozenset(
    getattr(sqlite3, name) for name in (
        "SQLITE_PERM", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_NOMEM", "SQLITE_READONLY",
        "SQLITE_IOERR", "SQLITE_CORRUPT", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL",
        "SQLITE_NOLFS", "SQLITE_AUTH", "SQLITE_NOTADB"))


def unavailable(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the database is unavailable (rather than that we misused it)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _UNAVAILABLE


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


def _row(event: StoredEvent) -> Tuple[Any, ...]:
    named = event.named
    labels: Tuple[Any, ...] = (None, None, None, None)
    if named is not None:
        keys = _LABELS.get(event.version, _V2_LABELS)
        labels = tuple(named.get(key) if key else "" for key in keys)
    timestamp = labels[3] if type(labels[3]) is int else None
    return (
        event.uuid, event.version, _text(labels[0]), _text(labels[1]), _text(labels[2]),
        timestamp, event.received_ms, event.raw.decode("utf-8"),
        json.dumps(event.document if event.version != "1" else None),
        None if named is None else json.dumps(named),
    )


class SQLiteSink(Sink):
    """A thread-safe SQLite store of events keyed by canonical uuid.

    One connection behind a lock: a worker's threads write small batches, and
    a single writer is what SQLite wants anyway.

    :param path: a database file, or ``":memory:"`` (the default) for tests.
    :param busy_timeout: seconds a batch waits for the database and for the
        other threads' batches before it is answered 503.
    """

    def __init__(self, path: str = MEMORY, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = _TimedLock(busy_timeout, path)
        self._closed = False
        try:
            if path != MEMORY:
                _create_private(path)
            self._db = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False,
                                       isolation_level=None)
            self._db.row_factory = sqlite3.Row
            if path != MEMORY:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # a 2xx survives a power cut
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise SinkUnavailable(f"sqlite: cannot open {path}: {exc}") from None

    # -- the sink contract ------------------------------------------------------

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Outcome]:
        """Store a batch in one transaction; events already present are duplicates."""
        outcomes: List[Outcome] = [STORED] * len(events)
        refused = False
        with self._lock:
            if self._closed:
                raise SinkUnavailable(f"sqlite: the sink for {self.path} is closed")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for index, event in enumerate(events):
                        try:
                            inserted = self._db.execute(_INSERT, _row(event)).rowcount == 1
                        except _VALUE_ERRORS as exc:
                            outcomes[index] = Outcome.refused(
                                f"SQLite cannot store this event: {exc}")
                            refused = True
                            continue
                        if not inserted:
                            outcomes[index] = DUPLICATE
                            self._db.execute(
                                "UPDATE events SET receipts = receipts + 1 WHERE uuid = ?",
                                (event.uuid,))
                    self._db.execute("ROLLBACK" if refused else "COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if not unavailable(exc):
                    raise  # not the database's state: a bug, answered 500
                raise SinkUnavailable(f"sqlite: {exc} ({exc.sqlite_errorname}; "
                                      f"{self.path})") from None
        return outcomes

    def describe(self) -> str:
        """For the start line: the file, or a warning that there is none."""
        if self.path == MEMORY:
            return "sqlite :memory: (in this process only: acknowledged events die with it)"
        return f"sqlite {os.path.abspath(self.path)} (WAL, shared by every worker)"

    def ready(self) -> bool:
        """False once closed (cheap: :meth:`probe` checks the file)."""
        return not self._closed

    def probe(self) -> None:
        """Commit a one-row write, as a batch would.

        :raises SinkUnavailable: the database cannot take it (full, read-only, locked, gone).
        """
        import time

        with self._lock:
            if self._closed:
                raise SinkUnavailable("sqlite: the sink is closed")
            try:
                self._db.execute("SAVEPOINT probe")
                try:
                    self._db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)",
                                     (time.time(),))
                    self._db.execute("RELEASE probe")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK TO probe")
                        self._db.execute("RELEASE probe")
                    raise
            except sqlite3.Error as exc:
                raise SinkUnavailable(f"sqlite: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

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


def _create_private(path: str) -> None:
    """Create the database file 0600 whatever the umask (SQLite gives its WAL and
    shared-memory files the same mode); an existing file is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        problem = _untrusted(path)
        if problem:
            raise sqlite3.OperationalError(problem) from None
        return
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot create the file: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _untrusted(path: str) -> Optional[str]:
    """Why an existing database file is not one to keep events in, or None.

    A symlink, or a file that another user owns or can write, is refused: that
    user could change or delete events already acknowledged. A file of another
    user that this process may not write is left to SQLite's own error.
    """
    import stat

    from publisher.paths import owner_name

    try:
        info = os.lstat(path)
    except OSError:
        return None  # gone meanwhile: SQLite creates it (with the umask's mode)
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return "it is a symlink; give the file itself"
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if info.st_uid != os.geteuid() and os.access(path, os.W_OK):
        return (f"it belongs to {owner_name(info.st_uid)}, not to this user; another user "
                f"could change or delete the events in it (check it, then remove it)")
    if mode & 0o022:
        return (f"it is writable by {'others' if mode & 0o002 else 'its group'} (mode "
                f"{mode:04o}); another user could change or delete the events in it "
                f"(check it, then chmod 0600 {path})")
    return None


class _TimedLock:
    """The connection's lock; a batch waits for it at most the busy timeout, then 503."""

    def __init__(self, timeout: float, path: str) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout
        self._path = path

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=self._timeout):
            raise SinkUnavailable(f"sqlite: other batches held {self._path} for over "
                                  f"{self._timeout:g} s")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def default_path(environ: Mapping[str, str] = os.environ) -> str:
    """``$STATE_DIRECTORY/events.sqlite3`` (the first directory systemd gives).

    :raises ConfigError: ``STATE_DIRECTORY`` is not set: the path must be given.
    """
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if not state:
        raise ConfigError("sqlite.path", "required: the collector answers 200 only for events "
                          "on disk, and $STATE_DIRECTORY is not set; give the database file, "
                          "e.g. --option sqlite.path=/var/lib/baseplate-events/events.sqlite3")
    return os.path.join(state, "events.sqlite3")


def create(options: Mapping[str, str]) -> SQLiteSink:
    """The sink from its settings: ``sqlite.path``, ``sqlite.busy_timeout`` (prefix stripped;
    see :data:`~baseplate_events.collector.settings.COLLECTOR_SETTINGS`).

    :raises ConfigError: no path and no ``$STATE_DIRECTORY``, or a bad option.
    """
    values = sink_options("sqlite", options)
    path = values["path"] or default_path()
    if path == MEMORY:
        logger.warning("sqlite.path = :memory: keeps events in this process only: events "
                       "answered 200 die with it; give a file for anything but a test")
    return SQLiteSink(path, values["busy_timeout"])
