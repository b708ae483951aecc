"""Read the JSONL sink's files back (:mod:`baseplate_events.collector.sinks.jsonl`).

- The finished files, ``DIR/*.jsonl``, in name order (stream, then the UTC
  time the file was started, host, process): whole, and never written again.
- With ``--pending`` or ``--follow``, also the whole lines of the ``.part``
  files being written, each event marked ``"pending": true``: a write that
  fails is cut back and answered 503, so such a line may vanish (and arrive
  again, as the publisher retries the batch).
- ``--merge`` orders the events of all files by received time instead (each
  gunicorn worker writes its own files).
- ``--follow`` looks at the directory every ``poll`` seconds and reads the
  lines added since: a ``.part`` file is followed through its rename to
  ``.jsonl`` by its inode.

The reader runs as the collector's user or in its group (``jsonl.mode``
0640 or 0660 lets a group read); it only reads. A file that is a symbolic
link or not a regular file, belongs to another user than the directory, has
more than one link or that anyone may write is refused with a warning naming
it and why, never read.
"""
from __future__ import annotations

import glob
import heapq
import logging
import os
import stat
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterator, List, Mapping, Optional, Tuple

from ..sinks.jsonl import PART_SUFFIX, read_line, sink_arguments
from . import CAUGHT_UP, Events, FilePosition, Reader, TailedEvent, TailRequest, UnreadableSink

__all__ = ["JSONLReader"]

logger = logging.getLogger(__name__)

_FINISHED = ".jsonl"
_BLOCK = 1 << 16
#: how many of a .part file's last lines are remembered to see a cut back: more
#: than one batch holds (500 KiB of events of 100 bytes or more)
_RECENT = 8192


@dataclass
class _Cursor:
    """How far one file has been read: bytes (whole lines only) and lines."""

    path: str
    offset: int = 0
    #: -1: not counted yet (counted when the file grows)
    lines: int = 0
    #: whether its trailing bytes that are no whole line were reported
    warned: bool = False
    #: a .part file's last lines read: (start, end, line number, CRC-32), to see a cut back
    recent: Deque[Tuple[int, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=_RECENT))

    def remember(self, start: int, line: bytes, number: int) -> None:
        self.recent.append((start, start + len(line), number, zlib.crc32(line)))

    def rewind(self, fd: int) -> None:
        """Go back to the last line read that is still there as it was read.

        The sink cuts a failed write back to the file's length before it, and
        writes the next batch from there; the lines read from the cut part
        are gone (they were pending), and what follows is read anew.
        """
        while self.recent:
            start, end, number, crc = self.recent[-1]
            if zlib.crc32(os.pread(fd, end - start, start)) == crc:
                self.offset, self.lines = end, number
                return
            self.recent.pop()
            self.offset, self.lines = start, number - 1


class JSONLReader(Reader):
    """The JSONL sink's directory, read back.

    :param poll: seconds between looks at the directory with ``follow``.
    """

    def __init__(self, directory: str, poll: float = 0.2) -> None:
        self.directory = directory
        self.poll = poll

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> "JSONLReader":
        """From the collector's ``jsonl.*`` options (prefix stripped).

        :raises ConfigError: an option is missing or invalid.
        """
        return cls(str(sink_arguments(options)["directory"]))

    # -- the reader contract -----------------------------------------------------------

    def events(self, request: TailRequest,
               stop: threading.Event) -> Events:
        pending = request.pending or request.follow
        self._check_directory()
        paths = self._paths(pending)
        if not pending:
            unread = len(self._paths(True)) - len(paths)
            if unread:
                logger.info("jsonl: %d file(s) still being written (.jsonl.part) not read; "
                            "--pending reads their whole lines too", unread)
        cursors: Dict[Tuple[int, int], _Cursor] = {}
        if request.last is None:
            streams = [self._read(path, cursors, 0) for path in paths]
            if request.merge:
                yield from heapq.merge(*streams, key=_received)
            else:
                for stream in streams:
                    yield from stream
        elif request.merge:
            # each file's last N, merged: the last N of those are the last N of all
            streams = [self._read_last(path, cursors, request.last) for path in paths]
            yield from deque(heapq.merge(*streams, key=_received), maxlen=request.last)
        else:
            yield from self._last_by_name(paths, cursors, request.last)
        yield CAUGHT_UP
        while request.follow and not stop.wait(self.poll):
            batch = self._read_new(cursors, pending)
            if request.merge:
                batch.sort(key=_received)
            if batch:
                yield from batch
                yield CAUGHT_UP

    # -- files ---------------------------------------------------------------------------

    def _check_directory(self) -> None:
        try:
            info = os.stat(self.directory)
        except OSError as exc:
            raise UnreadableSink(f"jsonl.directory: cannot read {self.directory}: "
                                 f"{exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise UnreadableSink(f"jsonl.directory: {self.directory} is not a directory")
        if not os.access(self.directory, os.R_OK | os.X_OK):
            raise UnreadableSink(f"jsonl.directory: cannot list {self.directory}: permission "
                                 "denied; run the tail as the collector's user or in its group "
                                 "(jsonl.mode)")
        self._owner = info.st_uid

    def _paths(self, pending: bool) -> List[str]:
        """The files to read, in name order."""
        pattern = os.path.join(glob.escape(self.directory), "*" + _FINISHED)
        paths = glob.glob(pattern) + (glob.glob(pattern + PART_SUFFIX) if pending else [])
        return sorted(paths)

    def _open(self, path: str) -> Optional[int]:
        """A descriptor of a regular file of the directory's owner, or None (warned)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # renamed (finished) or taken away by a pipeline since the listing
        except OSError as exc:
            if os.path.islink(path):
                logger.warning("jsonl: refused %s: a symbolic link", path)
            elif exc.errno == 13:
                logger.warning("jsonl: cannot read %s: permission denied; run the tail as the "
                               "collector's user or in its group (jsonl.mode)", path)
            else:
                logger.warning("jsonl: cannot read %s: %s", path, exc.strerror)
            return None
        problem = self._foreign(os.fstat(fd))
        if problem:
            os.close(fd)
            logger.warning("jsonl: refused %s: %s", path, problem)
            return None
        return fd

    def _foreign(self, info: os.stat_result) -> Optional[str]:
        """Why a file is not one the collector wrote, or None."""
        from publisher.paths import owner_name

        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            return "it is not a regular file"
        if info.st_uid != self._owner:
            return (f"it belongs to {owner_name(info.st_uid)}, not to the directory's owner "
                    f"{owner_name(self._owner)}")
        if info.st_nlink != 1:
            return f"it has {info.st_nlink} links"
        if mode & 0o002:
            return f"anyone may write it (mode {mode:04o})"
        return None

    def _read(self, path: str, cursors: Dict[Tuple[int, int], _Cursor],
              offset: int) -> Iterator[TailedEvent]:
        """The whole lines of ``path`` from ``offset``; its cursor is kept up to date."""
        fd = self._open(path)
        if fd is None:
            return
        info = os.fstat(fd)
        cursor = cursors.setdefault((info.st_dev, info.st_ino), _Cursor(path))
        pending = path.endswith(PART_SUFFIX)
        with os.fdopen(fd, "rb", buffering=1 << 20) as f:
            f.seek(offset)
            number = cursor.lines
            for line in f:
                if not line.endswith(b"\n"):
                    if not pending and not cursor.warned:
                        cursor.warned = True
                        logger.warning("jsonl: %s ends in %d bytes that are no whole line",
                                       path, len(line))
                    break
                number += 1
                if pending:
                    cursor.remember(cursor.offset, line, number)
                cursor.offset += len(line)
                cursor.lines = number
                event = self._event(line, path, number, pending)
                if event is not None:
                    yield event

    def _read_last(self, path: str, cursors: Dict[Tuple[int, int], _Cursor],
                   count: int) -> Iterator[TailedEvent]:
        """The last ``count`` whole lines of ``path``, read from its end."""
        fd = self._open(path)
        if fd is None:
            return iter(())
        try:
            info = os.fstat(fd)
            end = start = _whole_lines_end(fd, info.st_size)
            seen = 0
            while start > 0 and seen <= count:
                begin = max(0, start - _BLOCK)
                seen += os.pread(fd, start - begin, begin).count(b"\n")
                start = begin
            data = os.pread(fd, end - start, start)
            lines = data.split(b"\n")[:-1][-count:]
            first = _count_lines(fd, end) - len(lines)
        finally:
            os.close(fd)
        cursor = cursors[(info.st_dev, info.st_ino)] = _Cursor(path, end, first + len(lines))
        pending = path.endswith(PART_SUFFIX)
        if pending:
            start = end - sum(len(line) + 1 for line in lines)
            for number, line in enumerate(lines, first + 1):
                cursor.remember(start, line + b"\n", number)
                start += len(line) + 1
        events = (self._event(line + b"\n", path, first + n, pending)
                  for n, line in enumerate(lines, 1))
        return (event for event in events if event is not None)

    def _last_by_name(self, paths: List[str], cursors: Dict[Tuple[int, int], _Cursor],
                      count: int) -> List[TailedEvent]:
        """The last ``count`` events of the files in name order, read from the last file back."""
        found: List[TailedEvent] = []
        for index in range(len(paths) - 1, -1, -1):
            if len(found) >= count:
                self._skip(paths[index], cursors)  # for --follow: read on from its end
                continue
            found[:0] = self._read_last(paths[index], cursors, count - len(found))
        return found

    def _skip(self, path: str, cursors: Dict[Tuple[int, int], _Cursor]) -> None:
        """Put the file's cursor at its end, its line count to be taken if it grows."""
        fd = self._open(path)
        if fd is None:
            return
        try:
            info = os.fstat(fd)
            cursors[(info.st_dev, info.st_ino)] = _Cursor(
                path, _whole_lines_end(fd, info.st_size), -1)
        finally:
            os.close(fd)

    def _read_new(self, cursors: Dict[Tuple[int, int], _Cursor],
                  pending: bool) -> List[TailedEvent]:
        """The lines added since the last look (``--follow``): to files, and in new files."""
        batch: List[TailedEvent] = []
        seen = set()
        for path in self._paths(pending):
            try:
                info = os.lstat(path)
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            seen.add(key)
            cursor = cursors.get(key)
            if cursor is not None:
                cursor.path = path  # a .part renamed when it was finished
                if path.endswith(PART_SUFFIX) and cursor.recent:
                    self._rewind(path, cursor)
                elif info.st_size < cursor.offset:  # truncated by hand: read on from its end
                    cursor.offset = info.st_size
                    cursor.lines = -1  # counted again below
                if not path.endswith(PART_SUFFIX):
                    cursor.recent.clear()  # finished: never written again
                if info.st_size == cursor.offset:
                    continue
            batch.extend(self._read_from(path, cursors, cursor))
        for key in set(cursors) - seen:
            del cursors[key]  # taken away: its inode may be used again
        return batch

    def _rewind(self, path: str, cursor: _Cursor) -> None:
        fd = self._open(path)
        if fd is not None:
            try:
                cursor.rewind(fd)
            finally:
                os.close(fd)

    def _read_from(self, path: str, cursors: Dict[Tuple[int, int], _Cursor],
                   cursor: Optional[_Cursor]) -> Iterator[TailedEvent]:
        if cursor is not None and cursor.lines < 0:
            fd = self._open(path)
            if fd is None:
                return iter(())
            try:
                cursor.offset = _whole_lines_end(fd, cursor.offset)
                cursor.lines = _count_lines(fd, cursor.offset)
            finally:
                os.close(fd)
        return self._read(path, cursors, 0 if cursor is None else cursor.offset)

    def _event(self, line: bytes, path: str, number: int,
               pending: bool) -> Optional[TailedEvent]:
        try:
            parsed = read_line(line)
        except ValueError as exc:
            self.problems += 1
            logger.warning("jsonl: %s:%d: %s", path, number, exc)
            return None
        return TailedEvent(parsed.uuid, parsed.stream, parsed.received_ms, bytes(parsed.event),
                           FilePosition(path, number, pending))


def _received(event: TailedEvent) -> int:
    return event.received_ms


def _whole_lines_end(fd: int, size: int) -> int:
    """The offset after the last newline at or before ``size``."""
    end = size
    while end > 0:
        begin = max(0, end - _BLOCK)
        newline = os.pread(fd, end - begin, begin).rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        end = begin
    return 0


def _count_lines(fd: int, end: int) -> int:
    """How many newlines the first ``end`` bytes hold."""
    count = offset = 0
    while offset < end:
        chunk = os.pread(fd, min(1 << 20, end - offset), offset)
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count

