"""The write-ahead spool: every event taken off the queue is on disk before it can be lost.

The drain loop appends each wake-up's events as one *record* to the current
segment file (one ``writev``); the sender reads records back, batches and
sends them, then moves the *ack* position past what the collector accepted.
A ``kill -9`` therefore loses nothing: on start the spool replays everything
after the ack position (at-least-once; a batch in flight may be sent twice).

Layout of ``spool.path`` (a directory, mode 0700)::

    lock                      flock()ed by the running publisher
    ack                       the first event not yet accepted: segment, offset, index
    00000000000000000001.seg  records, appended; rotated at spool.segment_bytes

A record is a 24-byte header (magic, event count, payload length, CRC-32,
append time in ms), the event lengths (``count`` × u32) and the events joined
with commas. A torn record at the tail (a crash mid-write) is cut off on start.
When the spool outgrows ``spool.max_bytes`` the oldest segments are dropped,
and the events in them are counted and logged: the one explicit loss policy.
"""
from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from baseplate_events.errors import EventError

from .batching import Chunk

logger = logging.getLogger(__name__)

_MAGIC = 0xBE5B0001
_HEADER = struct.Struct("<IIIIQ")
_ACK_MAGIC = 0xBE5BA001
_ACK = struct.Struct("<IQQII")
_SUFFIX = ".seg"
#: Bytes the sender reads from a segment at once.
_READ_AHEAD = 256 * 1024
#: Event bytes of the newest records kept in memory for the sender.
RECENT_BYTES = 4 << 20

#: (segment number, byte offset of a record, events of that record already consumed)
Position = Tuple[int, int, int]


class SpoolError(EventError):
    """The spool directory cannot be used (permissions, another publisher holds it)."""


@dataclass
class Record:
    """One record read back from the spool."""

    segment: int
    offset: int
    next_offset: int
    chunk: Chunk
    time_ms: int


def _segment_name(number: int) -> str:
    return f"{number:020d}{_SUFFIX}"


class Spool:
    """A directory of append-only segment files with an ack position.

    One thread appends (:meth:`append`), one thread reads and acknowledges
    (:meth:`read`, :meth:`ack`); both may call the reporting methods.

    :raises SpoolError: the directory cannot be created, is not private, or is
        locked by another publisher.
    """

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20,
        fsync: str = "interval",
        fsync_interval: float = 1.0,
        on_drop: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        # Dropping works in whole segments, so several must fit in the budget.
        self.segment_bytes = max(512, min(segment_bytes, max_bytes // 4))
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.on_drop = on_drop
        self._cond = threading.Condition(threading.Lock())
        self._last_sync = 0.0
        self._read_fds: Dict[int, int] = {}
        self._horizon: Tuple[int, int] = (0, 0)
        self._rbuf = b""
        self._rbuf_segment = -1
        self._rbuf_start = 0
        # Bytes appended since start, and the total at which a waiting reader wants
        # waking: the sender sleeps until a batch's worth is there, not per record.
        self._appended = 0
        self._wake_at: Optional[int] = None
        # The newest records, as appended: the sender, normally right behind the
        # writer, takes them from here instead of reading them back from the file.
        self._recent: Dict[Tuple[int, int], Record] = {}
        self._recent_bytes = 0
        self._open_directory()
        self._ack = self._read_ack()
        self._sizes: Dict[int, int] = {}  # segment -> committed length
        self.recovered_events, self.recovered_bytes, self.truncated_bytes = self._recover()
        self.pending_events = self.recovered_events
        self.dropped_events = 0
        last = max(self._sizes) if self._sizes else self._ack[0]
        self._write_segment = last + 1
        self._write_fd = self._create_segment(self._write_segment)
        self._sizes[self._write_segment] = 0

    # -- start-up ---------------------------------------------------------------

    def _open_directory(self) -> None:
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            info = os.stat(self.path)
        except OSError as exc:
            raise SpoolError(f"spool.path: cannot create {self.path}: {exc.strerror}") from None
        if info.st_uid != os.getuid():
            raise SpoolError(
                f"spool.path: {self.path} belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.getuid()}); events must not sit in a directory others control"
            )
        if info.st_mode & 0o077:
            os.chmod(self.path, 0o700)
        self._lock_fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise SpoolError(
                    f"spool.path: {self.path} is in use by another publisher; "
                    "give each publisher its own spool.path"
                ) from None
            raise
        self._ack_fd = os.open(os.path.join(self.path, "ack"), os.O_RDWR | os.O_CREAT, 0o600)

    def _segments(self) -> List[int]:
        numbers = []
        for name in os.listdir(self.path):
            if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)].isdigit():
                numbers.append(int(name[: -len(_SUFFIX)]))
        return sorted(numbers)

    def _read_ack(self) -> Position:
        data = os.pread(self._ack_fd, _ACK.size, 0)
        if len(data) == _ACK.size:
            magic, segment, offset, index, crc = _ACK.unpack(data)
            if magic == _ACK_MAGIC and crc == zlib.crc32(data[:-4]):
                return (segment, offset, index)
            logger.warning("spool: the ack file is damaged; replaying every spooled event")
        segments = self._segments()
        return (segments[0], 0, 0) if segments else (0, 0, 0)

    def _recover(self) -> Tuple[int, int, int]:
        """Check every record after the ack position; cut off a torn tail; count what is pending."""
        events = total = truncated = 0
        ack_segment, ack_offset, ack_index = self._ack
        for number in self._segments():
            name = os.path.join(self.path, _segment_name(number))
            if number < ack_segment:
                os.unlink(name)
                continue
            fd = os.open(name, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                offset = 0
                while offset < size:
                    header = os.pread(fd, _HEADER.size, offset)
                    good = len(header) == _HEADER.size
                    if good:
                        magic, count, length, crc, _ms = _HEADER.unpack(header)
                        end = offset + _HEADER.size + 4 * count + length
                        good = magic == _MAGIC and end <= size
                    if good:
                        body = os.pread(fd, end - offset - _HEADER.size, offset + _HEADER.size)
                        good = zlib.crc32(body) == crc
                    if not good:
                        truncated += size - offset
                        logger.warning(
                            "spool: cut %d damaged bytes off the end of %s (a crash mid-write)",
                            size - offset,
                            name,
                        )
                        os.ftruncate(fd, offset)
                        size = offset
                        break
                    if (number, offset) >= (ack_segment, ack_offset):
                        events += count - (ack_index if (number, offset) == self._ack[:2] else 0)
                    offset = end
                self._sizes[number] = size
                total += size - (ack_offset if number == ack_segment else 0)
            finally:
                os.close(fd)
        return events, total, truncated

    def _create_segment(self, number: int) -> int:
        fd = os.open(
            os.path.join(self.path, _segment_name(number)),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        if self.fsync != "never":
            dir_fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return fd

    # -- writing (the drain thread) ----------------------------------------------

    def append(self, events: List[bytes]) -> None:
        """Write ``events`` as one record; returns once they are in the file."""
        self.append_joined(b",".join(events), array.array("I", map(len, events)).tobytes())

    def append_joined(self, joined: bytes, lengths_bytes: bytes) -> None:
        """Write one record: events joined with commas, and their lengths (native ``u32``)."""
        count = len(lengths_bytes) // 4
        crc = zlib.crc32(joined, zlib.crc32(lengths_bytes))
        header_time_ms = int(time.time() * 1000)
        header = _HEADER.pack(_MAGIC, count, len(joined), crc, header_time_ms)
        size = _HEADER.size + len(lengths_bytes) + len(joined)
        written = os.writev(self._write_fd, [header, lengths_bytes, joined])
        if written != size:  # pragma: no cover - a full disk; the next record is cut on start
            raise OSError(errno.ENOSPC, f"short write to the spool ({written} of {size} bytes)")
        if self.fsync == "always" or (
            self.fsync == "interval" and time.monotonic() - self._last_sync >= self.fsync_interval
        ):
            os.fdatasync(self._write_fd)
            self._last_sync = time.monotonic()
        lengths = array.array("I")
        lengths.frombytes(lengths_bytes)
        with self._cond:
            offset = self._sizes[self._write_segment]
            self._remember(Record(self._write_segment, offset, offset + size,
                                  Chunk(joined, lengths), header_time_ms))
            self._sizes[self._write_segment] += size
            self.pending_events += count
            rotate = self._sizes[self._write_segment] >= self.segment_bytes
            self._appended += size
            if self._wake_at is not None and self._appended >= self._wake_at:
                self._wake_at = None
                self._cond.notify_all()
        if rotate:
            self._rotate()
            # Only whole, finished segments can be dropped, so the budget is checked
            # when one is finished: the spool exceeds it by at most a segment.
            if self.pending_bytes() > self.max_bytes:
                self._drop_oldest()

    def _remember(self, record: Record) -> None:
        """Keep ``record`` in memory for the sender, dropping the oldest beyond RECENT_BYTES."""
        self._recent[(record.segment, record.offset)] = record
        self._recent_bytes += len(record.chunk.joined)
        while self._recent_bytes > RECENT_BYTES:
            self._forget(next(iter(self._recent)))

    def _forget(self, key: Tuple[int, int]) -> None:
        record = self._recent.pop(key)
        self._recent_bytes -= len(record.chunk.joined)

    def _rotate(self) -> None:
        fd = self._create_segment(self._write_segment + 1)
        old = self._write_fd
        with self._cond:
            self._write_segment += 1
            self._write_fd = fd
            self._sizes[self._write_segment] = 0
        if self.fsync != "never":
            os.fdatasync(old)
        os.close(old)

    def _drop_oldest(self) -> None:
        """Over budget: drop whole segments, oldest first, counting their events.

        Segments the sender has already read from are never dropped: their events
        are in its hands and will be delivered. So the oldest droppable segment is
        the first one after the sender's read horizon.
        """
        while self.pending_bytes() > self.max_bytes:
            with self._cond:
                horizon = max(self._horizon[0], self._ack[0])
                candidates = [n for n in self._sizes if horizon < n < self._write_segment]
                if not candidates:
                    # Only what the sender holds and the segment being written are left:
                    # over budget by less than a segment and a batch, until they move on.
                    return
                victim = min(candidates)
                size = self._sizes.pop(victim)
                for key in [k for k in self._recent if k[0] == victim]:
                    self._forget(key)
            events = self._count_events(victim, size)
            self._unlink(victim)
            with self._cond:
                self.pending_events -= events
                self.dropped_events += events
            logger.error(
                "spool over budget (spool.max_bytes=%d): dropped the oldest %d events (%d bytes)",
                self.max_bytes,
                events,
                size,
            )
            if self.on_drop is not None:
                self.on_drop(events, size)

    def _count_events(self, segment: int, size: int) -> int:
        count = offset = 0
        try:
            fd = os.open(os.path.join(self.path, _segment_name(segment)), os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            while offset < size:
                header = os.pread(fd, _HEADER.size, offset)
                if len(header) < _HEADER.size:
                    break
                _magic, n, length, _crc, _ms = _HEADER.unpack(header)
                count += n
                offset += _HEADER.size + 4 * n + length
        finally:
            os.close(fd)
        return count

    # -- reading (the sender thread) ---------------------------------------------

    def read(self, position: Position) -> Optional[Record]:
        """The record at ``position`` (or the first live one after it); ``None`` at the end."""
        segment, offset, _index = position
        while True:
            with self._cond:
                if segment < self._ack[0]:
                    segment, offset = self._ack[0], self._ack[1]
                size = self._sizes.get(segment)
                newest = self._write_segment
                if size is not None and (segment, offset) > self._horizon:
                    # From here on this segment is the sender's: the budget keeps off it.
                    self._horizon = (segment, offset)
                recent = self._recent.get((segment, offset))
            if recent is not None:
                return recent
            if size is None and segment < newest:
                segment, offset = segment + 1, 0
                continue
            if size is None or offset >= size:
                if segment < newest:
                    self._close_reader(segment)
                    segment, offset = segment + 1, 0
                    continue
                return None
            return self._parse(segment, offset, size)

    def _parse(self, segment: int, offset: int, size: int) -> Record:
        """Decode the record at ``offset`` from the read-ahead buffer (refilled as needed)."""
        buf, start = self._rbuf, self._rbuf_start
        if (
            self._rbuf_segment != segment
            or offset < start
            or offset + _HEADER.size > start + len(buf)
        ):
            buf, start = self._fill(segment, offset, size, _HEADER.size)
        at = offset - start
        _magic, count, length, _crc, time_ms = _HEADER.unpack_from(buf, at)
        record_size = _HEADER.size + 4 * count + length
        if at + record_size > len(buf):
            buf, start = self._fill(segment, offset, size, record_size)
            at = 0
        body = at + _HEADER.size
        lengths = array.array("I")
        lengths.frombytes(buf[body : body + 4 * count])
        chunk = Chunk(memoryview(buf)[body + 4 * count : at + record_size], lengths)
        return Record(segment, offset, offset + record_size, chunk, time_ms)

    def _fill(self, segment: int, offset: int, size: int, need: int) -> Tuple[bytes, int]:
        # One pread brings many records: written moments ago, they are in the page cache.
        want = min(max(_READ_AHEAD, need), size - offset)
        self._rbuf = os.pread(self._reader_fd(segment), want, offset)
        self._rbuf_segment, self._rbuf_start = segment, offset
        return self._rbuf, offset

    def _reader_fd(self, segment: int) -> int:
        fd = self._read_fds.get(segment)
        if fd is None:
            fd = os.open(os.path.join(self.path, _segment_name(segment)), os.O_RDONLY)
            self._read_fds[segment] = fd
        return fd

    def _close_reader(self, segment: int) -> None:
        fd = self._read_fds.pop(segment, None)
        if fd is not None:
            os.close(fd)

    def wait(self, timeout: float, position: Position, min_bytes: int = 1) -> None:
        """Sleep until ``min_bytes`` are spooled beyond ``position``, or ``timeout`` passes.

        Appends wake the reader only once that much is there, so a busy drain
        loop does not hand the GIL to the sender for every record.
        """
        with self._cond:
            missing = min_bytes - self._bytes_after(position)
            if missing > 0:
                self._wake_at = self._appended + missing
                self._cond.wait(timeout)
                self._wake_at = None

    def _bytes_after(self, position: Position) -> int:
        segment, offset = max(position[:2], self._ack[:2])
        after = max(0, self._sizes.get(segment, 0) - offset)
        return after + sum(size for number, size in self._sizes.items() if number > segment)

    def rewind(self) -> None:
        """The sender dropped what it held and starts again from the ack position."""
        with self._cond:
            self._horizon = self._ack[:2]

    def wake(self) -> None:
        """Wake a reader sleeping in :meth:`wait` (at shutdown)."""
        with self._cond:
            self._cond.notify_all()

    def ack(self, position: Position, events: int) -> None:
        """The collector has everything before ``position``; forget it."""
        with self._cond:
            if position <= self._ack:
                return  # already past it (the budget dropped that segment)
            old_segment = self._ack[0]
            self._ack = position
            self.pending_events = max(0, self.pending_events - events)
            for key in [k for k in self._recent if k < position[:2]]:
                self._forget(key)
            for number in [n for n in self._sizes if n < position[0]]:
                del self._sizes[number]
            self._write_ack()
        for number in range(old_segment, position[0]):
            self._close_reader(number)
            self._unlink(number)

    def _write_ack(self) -> None:
        data = _ACK.pack(_ACK_MAGIC, *self._ack, 0)[:-4]
        os.pwrite(self._ack_fd, data + struct.pack("<I", zlib.crc32(data)), 0)
        if self.fsync == "always":
            os.fdatasync(self._ack_fd)

    def _unlink(self, segment: int) -> None:
        try:
            os.unlink(os.path.join(self.path, _segment_name(segment)))
        except FileNotFoundError:
            pass

    # -- reporting ---------------------------------------------------------------

    @property
    def ack_position(self) -> Position:
        with self._cond:
            return self._ack

    def pending_bytes(self) -> int:
        """Bytes on disk after the ack position."""
        with self._cond:
            segment, offset, _ = self._ack
            return sum(s for n, s in self._sizes.items() if n >= segment) - offset

    def oldest_pending_ms(self) -> Optional[int]:
        """Append time (ms since the epoch) of the oldest event not yet accepted."""
        with self._cond:
            segment, offset, _ = self._ack
            live = sorted((n, size) for n, size in self._sizes.items() if n >= segment)
        for number, size in live:
            start = offset if number == segment else 0
            if start >= size:
                continue
            try:
                fd = os.open(os.path.join(self.path, _segment_name(number)), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                header = os.pread(fd, _HEADER.size, start)
            finally:
                os.close(fd)
            if len(header) == _HEADER.size:
                return int(_HEADER.unpack(header)[4])
        return None

    def close(self) -> None:
        """Sync and close every file; the lock goes with them."""
        for segment in list(self._read_fds):
            self._close_reader(segment)
        if self.fsync != "never":
            os.fdatasync(self._write_fd)
            os.fdatasync(self._ack_fd)
        os.close(self._write_fd)
        os.close(self._ack_fd)
        os.close(self._lock_fd)
