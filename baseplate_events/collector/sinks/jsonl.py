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

A batch is written in one ``write`` and, unless ``jsonl.fsync = false``,
``fsync``-ed before the 2xx. A write that fails (disk full) is cut back to the
file's last good length and answered 503, so the publisher retries and no half
line stays. Lines are not de-duplicated: delivery is at least once, and a
reader de-duplicates by ``uuid``.
"""
from __future__ import annotations

import fcntl
import glob
import logging
import os
import socket
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence

from ...errors import ConfigError
from ..settings import COLLECTOR_SETTINGS, sink_options
from . import STREAMS, SinkUnavailable, StoredEvent

__all__ = ["JSONLSink", "create"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: int = COLLECTOR_SETTINGS["jsonl.max_bytes"].default
DEFAULT_MAX_SECONDS: float = COLLECTOR_SETTINGS["jsonl.max_seconds"].default
_PART = ".part"


class _OpenFile:
    """One stream's file being written: its descriptor (locked), name, size and age."""

    def __init__(self, path: str, started: float) -> None:
        self.path = path
        self.started = started
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                          0o644)
        # A sink starting beside us may lock (and, empty, remove) the file
        # between our open and our lock; then it has no name and we start again.
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        if os.fstat(self.fd).st_nlink == 0:
            os.close(self.fd)
            raise FileNotFoundError(path)
        self.size = 0


class JSONLSink:
    """Appends each batch to the stream's current file; rotates by size and age.

    :param directory: where the files go (created if missing).
    :param clock: seconds since the epoch, for file ages and names; tests pass a fake one.
    """

    #: Only each event's uuid and bytes are written: no document is built.
    reads_documents = False

    def __init__(self, directory: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_seconds: float = DEFAULT_MAX_SECONDS, fsync: bool = True,
                 clock=time.time) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()
        self._files: Dict[str, _OpenFile] = {}
        self._sequence = 0
        self._closed = False
        self._host = socket.gethostname().replace("-", "_").replace("/", "_") or "host"
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise SinkUnavailable(f"jsonl: cannot create {directory}: {exc.strerror}") from None
        self.recover()

    # -- the sink contract ------------------------------------------------------

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Optional[str]]:
        """Append the batch as one write (and fsync) to the stream's file."""
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        lines = b"".join(_line(stream, event) for event in events)
        with self._lock:
            if self._closed:
                raise SinkUnavailable("jsonl: the sink is closed")
            try:
                current = self._current(stream)
                self._write(current, lines)
            except OSError as exc:
                raise SinkUnavailable(f"jsonl: cannot write to {self.directory}: "
                                      f"{exc.strerror or exc}") from None
            if current.size >= self.max_bytes:
                self._rotate(stream)
        return [None] * len(events)

    def ready(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._rotate_old()
        return os.access(self.directory, os.W_OK | os.X_OK)

    def close(self) -> None:
        with self._lock:
            for stream in list(self._files):
                self._rotate(stream)
            self._closed = True

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
                    current = _OpenFile(os.path.join(self.directory, name), now)
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
                os.rename(current.path, current.path[: -len(_PART)])
            else:
                os.unlink(current.path)
        finally:
            os.close(current.fd)  # releases the lock only once the name is final

    def recover(self) -> int:
        """Finish the ``.part`` files of processes that died; return how many."""
        finished = 0
        for path in glob.glob(os.path.join(glob.escape(self.directory), f"*.jsonl{_PART}")):
            if any(f.path == path for f in self._files.values()):
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer holds it
                if not os.path.exists(path):
                    continue  # its writer rotated it while we were opening it
                _cut_half_line(fd, path)
                if os.fstat(fd).st_size:
                    os.rename(path, path[: -len(_PART)])
                else:
                    os.unlink(path)
                finished += 1
            finally:
                os.close(fd)
        if finished:
            logger.warning("jsonl: finished %d file(s) left by a process that stopped in %s",
                           finished, self.directory)
        return finished


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


def _line(stream: str, event: StoredEvent) -> bytes:
    # JSON strings cannot hold a raw newline, so one in the event is whitespace.
    raw = event.raw.replace(b"\n", b" ").replace(b"\r", b" ")
    return b'{"uuid":"%s","stream":"%s","received_ms":%d,"event":%s}\n' % (
        event.uuid.encode("ascii"), stream.encode("ascii"), event.received_ms, raw)


def create(options: Mapping[str, str]) -> JSONLSink:
    """The sink from its settings: ``jsonl.directory`` (required), ``jsonl.max_bytes``,
    ``jsonl.max_seconds``, ``jsonl.fsync`` (prefix stripped; see
    :data:`~baseplate_events.collector.settings.COLLECTOR_SETTINGS`)."""
    values = sink_options("jsonl", options)
    if not values["directory"]:
        raise ConfigError("jsonl.directory", "required with sink = jsonl")
    return JSONLSink(values["directory"], values["max_bytes"], values["max_seconds"],
                     values["fsync"])
