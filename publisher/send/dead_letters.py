"""The dead-letter file: events the collector refused, set aside with its reason.

It is JSON lines, one event a line, appended and synced; this module alone
writes and reads it::

    {"time": "2026-11-30T09:00:00.000+00:00", "queue": "main", "status": 422,
     "reason": "...", "event": "<the event as text>"}

An event that is not UTF-8 is kept as ``"event_base64"`` instead of
``"event"``. The file has a budget (``dead_letter.max_bytes``): events that
would take it past the budget are not written; :meth:`DeadLetters.write`
returns how many, for the caller to count and log.

Another process may rename the file away to replay it (``--replay-dead-letter``)
while the publisher appends to it. A writer therefore locks the file it opened
and checks that it still bears the name; if not, it opens the name again. The
replay takes the same lock before it archives the file, so no line lands in a
file after it was read for the last time.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import errno
import fcntl
import json
import os
import threading
from dataclasses import dataclass
from typing import Iterator, List, Sequence, Union

from publisher.config.sections import DeadLetterSection

#: Default of ``dead_letter.max_bytes``.
DEFAULT_MAX_BYTES = 100 << 20


@dataclass(frozen=True)
class DeadLetter:
    """One event read back from a dead-letter file, and where its line ends."""

    event: bytes
    queue: str
    status: int
    reason: str
    line: int  # 1-based
    end: int  # byte offset just after the line


@dataclass(frozen=True)
class UnreadableLine:
    """A line that holds no event (damaged, or not written by the publisher)."""

    line: int
    problem: str
    end: int


def encode(events: Sequence[bytes], queue: str, status: int, reason: str) -> List[bytes]:
    """The lines (with their newline) that record ``events``."""
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    lines = []
    for event in events:
        record: "dict[str, Union[str, int]]" = {
            "time": when, "queue": queue, "status": status, "reason": reason
        }
        try:
            record["event"] = event.decode("utf-8")
        except UnicodeDecodeError:
            record["event_base64"] = base64.b64encode(event).decode("ascii")
        lines.append((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    return lines


def decode(line: bytes, number: int, end: int) -> "Union[DeadLetter, UnreadableLine]":
    """The event recorded on one line (1-based ``number``), or what is wrong with it."""
    try:
        record = json.loads(line)
    except ValueError as exc:
        return UnreadableLine(number, f"not JSON ({exc})", end)
    if not isinstance(record, dict):
        return UnreadableLine(number, "not a JSON object", end)
    try:
        if isinstance(record.get("event"), str):
            event = record["event"].encode("utf-8")
        elif isinstance(record.get("event_base64"), str):
            event = base64.b64decode(record["event_base64"], validate=True)
        else:
            return UnreadableLine(number, 'holds neither "event" nor "event_base64"', end)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        return UnreadableLine(number, f"event cannot be decoded ({exc})", end)
    if not event:
        return UnreadableLine(number, "the event is empty", end)
    status = record.get("status")
    return DeadLetter(
        event,
        str(record.get("queue", "")),
        status if isinstance(status, int) else 0,
        str(record.get("reason", "")),
        number,
        end,
    )


def read(
    path: str, offset: int = 0, partial: bool = True
) -> "Iterator[Union[DeadLetter, UnreadableLine]]":
    """Every line of ``path`` from byte ``offset`` (a line start), in order.

    A last line without its newline is unreadable (a writer killed mid-line)
    or, with ``partial=False``, not read (a writer may be finishing it).
    """
    with open(path, "rb") as f:
        f.seek(offset)
        number = 0
        if offset:
            # Line numbers count from the top of the file, for the report.
            with open(path, "rb") as head:
                number = head.read(offset).count(b"\n")
        position = offset
        for line in f:
            number += 1
            position += len(line)
            if not line.endswith(b"\n"):
                if not partial:
                    return
                yield UnreadableLine(number, "cut short (no newline at the end)", position)
            elif line.strip():
                yield decode(line, number, position)


class DeadLetters:
    """Appends refused events to the dead-letter file, within ``max_bytes``."""

    def __init__(self, path: str, queue_name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.queue_name = queue_name
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, section: DeadLetterSection, queue_name: str) -> "DeadLetters":
        """The dead-letter file of ``dead_letter.*``."""
        return cls(section.path, queue_name, section.max_bytes)

    def write(self, events: Sequence[bytes], status: int, reason: str) -> int:
        """Append one line per event and sync; returns how many did not fit the budget."""
        lines = encode(events, self.queue_name, status, reason)
        with self._lock:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = self._open_locked()
            try:
                room = self.max_bytes - os.fstat(fd).st_size
                kept = 0
                for line in lines:
                    if len(line) > room:
                        break
                    room -= len(line)
                    kept += 1
                if kept:
                    self._append(fd, b"".join(lines[:kept]))
            finally:
                os.close(fd)  # and the lock with it
        return len(lines) - kept

    @staticmethod
    def _append(fd: int, data: bytes) -> None:
        """Write all of ``data`` or nothing: a full disk must not leave half a line.

        :raises OSError: the write failed; the caller keeps the events.
        """
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise

    def _open_locked(self) -> int:
        """The file under its name, opened for appending and locked."""
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                opened, named = os.fstat(fd), os.stat(self.path)
                if (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino):
                    return fd
            except FileNotFoundError:
                pass  # renamed away by a replay after we opened it: open the name again
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
