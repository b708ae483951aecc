"""The SQLite sink: accepted events in one database file, one row per uuid.

The embedded default (``sink = sqlite``, ``sqlite.path = FILE``), what
``baseplate-events-tail`` reads back. Every gunicorn worker opens the same
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
by id) and, with a schema, the document by field names. A subclass may add
columns and tables of its own (the demo's page store,
:class:`demo_app.page_store.PageStore`, adds ``source``, ``action``, ``noun``
and ``timestamp_ms`` and a journal of answers and refusals).

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
from typing import Any, ClassVar, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

from ...errors import ConfigError
from ..service.settings import COLLECTOR_SETTINGS, sink_options
from . import DUPLICATE, STORED, Outcome, Sink, SinkUnavailable, StoredEvent

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SQLiteSink",
    "create",
    "default_path",
]

logger = logging.getLogger(__name__)

#: seconds a batch waits for the database (another worker's write, a lock)
DEFAULT_BUSY_TIMEOUT: float = COLLECTOR_SETTINGS["sqlite.busy_timeout"].default
MEMORY = ":memory:"

#: the ``events`` table: one row per uuid, the event as received and its documents
_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    uuid         TEXT PRIMARY KEY,
    version      TEXT NOT NULL,{extra}
    received_ms  INTEGER NOT NULL,
    receipts     INTEGER NOT NULL DEFAULT 1,
    raw          TEXT NOT NULL,
    fields       TEXT NOT NULL,
    named        TEXT
);
CREATE INDEX IF NOT EXISTS events_received ON events (received_ms);
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
"""
_COLUMNS = ("uuid", "version", "received_ms", "raw", "fields", "named")
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


class SQLiteSink(Sink):
    """A thread-safe SQLite store of events keyed by canonical uuid.

    One connection behind a lock: a worker's threads write small batches, and
    a single writer is what SQLite wants anyway.

    :param path: a database file, or ``":memory:"`` (the default) for tests.
    :param busy_timeout: seconds a batch waits for the database and for the
        other threads' batches before it is answered 503.

    A subclass may keep more in the same file: columns of ``events`` in
    :attr:`extra_columns`, filled per event by :meth:`extra_values`, and
    tables of its own in :attr:`extra_schema` (the demo's page does).
    """

    name = "sqlite"
    #: more columns of ``events`` (``"NAME TYPE"`` each; nullable), in :meth:`extra_values`' order
    extra_columns: ClassVar[Tuple[str, ...]] = ()
    #: more SQL run when the file is opened (``CREATE TABLE IF NOT EXISTS ...``)
    extra_schema: ClassVar[str] = ""

    def _add_missing_columns(self) -> None:
        """Add :attr:`extra_columns` to a file made without them (by the plain sink)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        for column in self.extra_columns:
            if column.split()[0] not in have:
                self._db.execute(f"ALTER TABLE events ADD COLUMN {column}")

    def extra_values(self, event: StoredEvent) -> Tuple[Any, ...]:
        """The values of :attr:`extra_columns` for ``event`` (none here)."""
        return ()

    def _row(self, event: StoredEvent) -> Tuple[Any, ...]:
        named = event.named
        return (event.uuid, event.version, event.received_ms, event.raw.decode("utf-8"),
                json.dumps(event.document if event.version != "1" else None),
                None if named is None else json.dumps(named), *self.extra_values(event))

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
            extra = "".join(f"\n    {column}," for column in self.extra_columns)
            self._db.executescript(_EVENTS.format(extra=extra) + self.extra_schema)
            self._add_missing_columns()
        except sqlite3.Error as exc:
            raise SinkUnavailable(f"sqlite: cannot open {path}: {exc}") from None
        columns = _COLUMNS + tuple(column.split()[0] for column in self.extra_columns)
        self._insert = (f"INSERT OR IGNORE INTO events ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})")

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
                    insert, row = self._insert, self._row
                    for index, event in enumerate(events):
                        try:
                            inserted = self._db.execute(insert, row(event)).rowcount == 1
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


_S = TypeVar("_S", bound=SQLiteSink)


def create(options: Mapping[str, str], kind: Type[_S] = SQLiteSink) -> _S:  # type: ignore[assignment]
    """The sink from its settings: ``sqlite.path``, ``sqlite.busy_timeout`` (prefix stripped;
    see :data:`~baseplate_events.collector.service.settings.COLLECTOR_SETTINGS`).

    :param kind: the class to make (a subclass that keeps more, such as the demo's).

    :raises ConfigError: no path and no ``$STATE_DIRECTORY``, or a bad option.
    """
    values = sink_options("sqlite", options)
    path = values["path"] or default_path()
    if path == MEMORY:
        logger.warning("sqlite.path = :memory: keeps events in this process only: events "
                       "answered 200 die with it; give a file for anything but a test")
    return kind(path, values["busy_timeout"])
