"""The JSONL sink: accepted events appended to files that a pipeline picks up.

``sink = jsonl`` with ``jsonl.directory = DIR``. Each line is one event::

    {"uuid":"…","stream":"v2","received_ms":1732790000123,"event":<the event's JSON as received>}

Files, and the rotation rule:

- Each process (each gunicorn worker) writes its own file per stream,
  ``DIR/<stream>-<UTC time>-<host>-<pid>-<n>.jsonl.part``, and holds an
  exclusive ``flock`` on it while it writes.
- A file is rotated when it reaches ``jsonl.max_bytes`` (default 64 MiB) or,
  at the next batch or readiness probe, once it is older than
  ``jsonl.max_seconds`` (default 300), and when the collector stops.
  Rotating renames it, atomically, to the same name without ``.part``.
- So a reader takes ``*.jsonl`` only: a file of that name is complete, holds
  whole lines only and is never written again. The reader may move or delete
  it once read.
- A file left as ``.part`` by a process that died (``kill -9``) is finished by
  the next sink that starts in the directory, or rotates: any half line at its
  end (an unanswered batch, which the publisher sends again) is cut off first.

The directory is a trust boundary, as the publisher's spool is: every event
of every publisher passes through it.

- ``jsonl.mode`` (default ``0600``) is the files' mode, whatever the umask;
  ``0640`` lets a reader group read them, ``0660`` also move or delete them.
  The directory gets the same bits plus search: ``0700``, ``2750`` or
  ``2770`` (setgid, so that files and new directories keep its group).
- A directory that exists is refused at start, with an error naming it and
  the problem, when it is a symlink, belongs to another user, is writable by
  others, or is writable by its group while ``jsonl.mode`` gives the group
  no write. Its parents are checked as the spool's are
  (:func:`publisher.paths.open_private_directory`). Otherwise its mode is
  set to the one above.
- Files are opened relative to the directory's descriptor, never following
  a symlink; start-up recovery adopts a ``.part`` file only if it is a
  regular file of this user, with one link, that nobody outside ``jsonl.mode``
  can write. Any other is left alone and logged.

A batch is written in one ``write`` and, unless ``jsonl.fsync = false``,
``fsync``-ed before the 2xx. A write that fails (disk full) is cut back to the
file's last good length and answered 503, so the publisher retries and no half
line stays. Lines are not de-duplicated: delivery is at least once, and a
reader de-duplicates by ``uuid``.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import socket
import stat
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence


from publisher.paths import UnsafePathError, open_private_directory

from ...errors import ConfigError
from ..service.settings import COLLECTOR_SETTINGS, JSONL_MODES as MODES
from ..service.settings import parse_jsonl_mode, sink_options
from . import STORED, STREAMS, Outcome, Sink, SinkUnavailable, StoredEvent
from .jsonl_lines import Line, read_line, write_line

__all__ = ["PART_SUFFIX", "JSONLSink", "Line", "create", "read_line", "sink_arguments"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: int = COLLECTOR_SETTINGS["jsonl.max_bytes"].default
DEFAULT_MAX_SECONDS: float = COLLECTOR_SETTINGS["jsonl.max_seconds"].default
DEFAULT_MODE: int = COLLECTOR_SETTINGS["jsonl.mode"].default
#: how long a batch waits for another thread's write before the answer is 503
DEFAULT_TIMEOUT: float = COLLECTOR_SETTINGS["jsonl.timeout"].default
#: the suffix of a file still being written (``….jsonl.part``)
PART_SUFFIX = _PART = ".part"
_OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


def directory_mode(mode: int) -> int:
    """The directory's mode for files of ``mode``: the same bits plus search, setgid for a group."""
    directory = mode | 0o100 | (0o010 if mode & 0o070 else 0)
    return directory | (stat.S_ISGID if mode & 0o070 else 0)


class _OpenFile:
    """One stream's file being written: its descriptor (locked), name, size and age."""

    def __init__(self, directory: int, name: str, path: str, started: float, mode: int) -> None:
        self.name = name
        self.path = path
        self.started = started
        self.fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | _OPEN_FLAGS,
                          mode, dir_fd=directory)
        try:
            os.fchmod(self.fd, mode)  # whatever the umask took away
            # A sink starting beside us may lock (and, empty, remove) the file
            # between our open and our lock; then it has no name and we start again.
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            if os.fstat(self.fd).st_nlink == 0:
                raise FileNotFoundError(path)
        except BaseException:
            os.close(self.fd)
            raise
        self.size = 0


class JSONLSink(Sink):
    """Appends each batch to the stream's current file; rotates by size and age.

    :param directory: where the files go (created if missing).
    :param mode: the files' mode (0600, 0640 or 0660); the directory's follows.
    :param timeout: seconds a batch waits for another thread's write.
    :param clock: seconds since the epoch, for file ages and names; tests pass a fake one.
    :raises UnsafePathError: the directory, or a parent, is not safe (see the module).
    """

    #: Only each event's uuid and bytes are written: no document is built.
    name = "jsonl"
    reads_documents = False

    def __init__(self, directory: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_seconds: float = DEFAULT_MAX_SECONDS, fsync: bool = True,
                 clock=time.time, mode: int = DEFAULT_MODE,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode:04o} is not one of "
                             f"{', '.join(f'{m:04o}' for m in MODES)}")
        self.directory = directory
        self.mode = mode
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()
        self._files: Dict[str, _OpenFile] = {}
        self._sequence = 0
        self._closed = False
        self._host = socket.gethostname().replace("-", "_").replace("/", "_") or "host"
        self._dir = open_private_directory(directory, directory_mode(mode), symlink=False)
        self.recover()

    def describe(self) -> str:
        """For the start line: where the files go and their mode."""
        return f"jsonl {self.directory} (files {self.mode:04o})"

    # -- the sink contract ------------------------------------------------------

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Outcome]:
        """Append the batch as one write (and fsync) to the stream's file."""
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        lines = b"".join(write_line(stream, event) for event in events)
        if not self._lock.acquire(timeout=self.timeout):
            raise SinkUnavailable(f"jsonl: another batch held {self.directory} for over "
                                  f"{self.timeout:g} s")
        try:
            if self._closed:
                raise SinkUnavailable("jsonl: the sink is closed")
            try:
                current = self._current(stream)
                self._write(current, lines)
                if current.size >= self.max_bytes:
                    self._rotate(stream)
            except OSError as exc:
                raise SinkUnavailable(f"jsonl: cannot write to {self.directory}: "
                                      f"{exc.strerror or exc}") from None
        finally:
            self._lock.release()
        return [STORED] * len(events)

    def ready(self) -> bool:
        """False once closed; rotates files past their age when no batch holds the sink."""
        if self._closed:
            return False
        if self._lock.acquire(blocking=False):  # never wait behind a batch
            try:
                self._rotate_old()
            except OSError:
                logger.exception("jsonl: cannot rotate in %s", self.directory)
            finally:
                self._lock.release()
        return not self._closed

    def probe(self) -> None:
        """Write, sync and remove a small file in the directory.

        :raises SinkUnavailable: that failed (a full disk, a read-only mount).
        """
        # A fresh name, created new: never a file someone else put (or linked) there.
        name = f".probe-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600,
                         dir_fd=self._dir)
            try:
                os.write(fd, b"probe\n" * 512)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(name, dir_fd=self._dir)
        except OSError as exc:
            raise SinkUnavailable(f"jsonl: cannot write to {self.directory}: "
                                  f"{exc.strerror or exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            for stream in list(self._files):
                self._rotate(stream)
            self._closed = True
            os.close(self._dir)

    # -- files ------------------------------------------------------------------------

    def _current(self, stream: str) -> _OpenFile:
        self._rotate_old()
        current = self._files.get(stream)
        if current is None:
            now = self._clock()
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            for attempt in range(3):  # the race in _OpenFile is rare; a new name ends it
                self._sequence += 1
                name = f"{stream}-{stamp}-{self._host}-{os.getpid()}-{self._sequence}.jsonl{_PART}"
                try:
                    current = _OpenFile(self._dir, name, os.path.join(self.directory, name),
                                        now, self.mode)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            assert current is not None
            self._files[stream] = current
        return current

    def _write(self, current: _OpenFile, lines: bytes) -> None:
        try:
            written = os.write(current.fd, lines)
            while written < len(lines):  # a short write: the rest, or an error
                written += os.write(current.fd, lines[written:])
            if self.fsync:
                os.fsync(current.fd)
        except OSError:
            # No half line may stay for a later batch to follow: cut back.
            try:
                os.ftruncate(current.fd, current.size)
            except OSError:
                logger.exception("jsonl: cannot cut %s back to %d bytes", current.path,
                                 current.size)
            raise
        current.size += len(lines)

    def _rotate_old(self) -> None:
        now = self._clock()
        for stream, current in list(self._files.items()):
            if now - current.started >= self.max_seconds:
                self._rotate(stream)

    def _rotate(self, stream: str) -> None:
        current = self._files.pop(stream)
        try:
            if current.size:
                os.rename(current.name, current.name[: -len(_PART)], src_dir_fd=self._dir,
                          dst_dir_fd=self._dir)
            else:
                os.unlink(current.name, dir_fd=self._dir)
        finally:
            os.close(current.fd)  # releases the lock only once the name is final

    def recover(self) -> int:
        """Finish the ``.part`` files of processes that died; return how many.

        Only a regular file of this user, with one link, that nobody outside
        ``jsonl.mode`` can write is adopted; any other is left and logged.
        """
        finished = 0
        ours = {f.name for f in self._files.values()}
        for name in sorted(os.listdir(self._dir)):
            if not name.endswith(f".jsonl{_PART}") or name in ours:
                continue
            path = os.path.join(self.directory, name)
            try:
                fd = os.open(name, os.O_RDWR | os.O_NONBLOCK | _OPEN_FLAGS, dir_fd=self._dir)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # gone: its writer rotated it meanwhile
                    logger.warning("jsonl: left %s alone: cannot open it (%s)", path,
                                   exc.strerror)
                continue
            try:
                problem = self._foreign(os.fstat(fd))
                if problem:
                    logger.warning("jsonl: left %s alone: %s; it is not ours to hand to "
                                   "readers (check it, then remove it)", path, problem)
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer holds it
                try:
                    now = os.stat(name, dir_fd=self._dir, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # its writer rotated it while we were opening it
                if (now.st_dev, now.st_ino) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
                    continue  # replaced meanwhile: the next start looks at it again
                _cut_half_line(fd, path)
                if os.fstat(fd).st_size:
                    os.rename(name, name[: -len(_PART)], src_dir_fd=self._dir,
                              dst_dir_fd=self._dir)
                else:
                    os.unlink(name, dir_fd=self._dir)
                finished += 1
            finally:
                os.close(fd)
        if finished:
            logger.warning("jsonl: finished %d file(s) left by a process that stopped in %s",
                           finished, self.directory)
        return finished

    def _foreign(self, info: os.stat_result) -> Optional[str]:
        """Why a ``.part`` file is not one this sink may adopt, or None."""
        from publisher.paths import owner_name

        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            return "it is not a regular file"
        if info.st_uid != os.geteuid():
            return f"it belongs to {owner_name(info.st_uid)}"
        if info.st_nlink != 1:
            return f"it has {info.st_nlink} links"
        if mode & 0o022 & ~self.mode:
            return f"it is writable by {'others' if mode & 0o002 else 'its group'} " \
                   f"(mode {mode:04o})"
        return None


def _cut_half_line(fd: int, path: str) -> None:
    """Truncate a file after its last newline (a half-written batch)."""
    size = os.fstat(fd).st_size
    keep = size
    block = 65536
    while keep > 0:
        start = max(0, keep - block)
        data = os.pread(fd, keep - start, start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        keep = start
    if keep != size:
        logger.warning("jsonl: cut %d bytes of a half-written batch off %s", size - keep, path)
        os.ftruncate(fd, keep)


def parse_mode(value: str) -> int:
    """``jsonl.mode``: ``0600``, ``0640`` or ``0660`` (octal)."""
    return parse_jsonl_mode("jsonl.mode", value)


def create(options: Mapping[str, str]) -> JSONLSink:
    """The sink from its settings: ``jsonl.directory`` (required), ``jsonl.max_bytes``,
    ``jsonl.max_seconds``, ``jsonl.fsync``, ``jsonl.mode``, ``jsonl.timeout`` (prefix
    stripped; see :data:`~baseplate_events.collector.service.settings.COLLECTOR_SETTINGS`).

    :raises ConfigError: an option is invalid, or the directory is not safe.
    """
    arguments = sink_arguments(options)
    try:
        return JSONLSink(**arguments)
    except UnsafePathError as exc:
        raise ConfigError("jsonl.directory", str(exc)) from None


def sink_arguments(options: Mapping[str, str]) -> Dict[str, Any]:
    """:class:`JSONLSink`'s arguments from its options (prefix stripped), checked.

    :raises ConfigError: an option is missing, unknown or invalid (named in full).
    """
    values = sink_options("jsonl", options)
    if not values["directory"]:
        raise ConfigError("jsonl.directory", "required with sink = jsonl")
    return {name: values[name]
            for name in ("directory", "max_bytes", "max_seconds", "fsync", "mode", "timeout")}
