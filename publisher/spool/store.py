"""The write-ahead spool: every event taken off the queue is on disk before it can be lost.

The intake loop appends each wake-up's events as one *record* to the current
segment file (one ``writev``); the sender reads records back, batches and
sends them, then moves the *ack* position past what the collector accepted.
A ``kill -9`` therefore loses nothing: on start the spool replays everything
after the ack position (at-least-once; a batch in flight may be sent twice).

Layout of ``spool.path`` (a directory only this user controls, mode 0700,
checked component by component: see ``paths.py``)::

    lock                      flock()ed by the running publisher
    ack                       the first event not yet accepted: segment, offset, index
    00000000000000000001.seg  records, appended; rotated at spool.segment_bytes

The bytes of a record are ``record.py``'s, those of the ack ``spool_format.py``'s; the check at
start-up is ``spool_recovery.py``'s. A write that fails or comes up short (a
full disk) is cut back to the last whole record before the error is raised,
so no record ever follows a partial one. A damaged record (a flipped byte)
costs that record only: readers skip to the next whole one, and the loss is
logged and counted. When the spool outgrows ``spool.max_bytes`` the oldest
segments are dropped, and the events in them are counted and logged: the one
explicit loss policy.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from baseplate_events.errors import EventError

from publisher.spool.chunk import Chunk
from publisher.paths import UnsafePathError, open_private_directory
from publisher.spool.framing import HEADER, join_events, pack_record, unpack_header, unpack_lengths
from publisher.spool.format import Position, pack_ack, segment_name, segment_number
from publisher.config.sections import SpoolSection
from publisher.spool.format import Damage, Record
from publisher.spool.reader import RecentRecords, SegmentReader
from publisher.spool.recovery import recover

logger = logging.getLogger("publisher.spool.store")

#: Event bytes of the newest records kept in memory for the sender.
RECENT_BYTES = 4 << 20

__all__ = ["Position", "Record", "Spool", "SpoolError"]


class SpoolError(EventError):
    """The spool directory cannot be used (permissions, another publisher holds it)."""


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
        on_damage: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        # Dropping works in whole segments, so several must fit in the budget.
        self.segment_bytes = max(512, min(segment_bytes, max_bytes // 4))
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.on_drop = on_drop
        #: Called with (events, bytes) when the reader skips a damaged record.
        self.on_damage = on_damage
        self._cond = threading.Condition(threading.Lock())
        self._last_sync = 0.0
        self._horizon: Tuple[int, int] = (0, 0)
        # Bytes appended since start, and the total at which a waiting reader wants
        # waking: the sender sleeps until a batch's worth is there, not per record.
        self._appended = 0
        self._wake_at: Optional[int] = None
        # The newest records, as appended: the sender, normally right behind the
        # writer, takes them from here instead of reading them back from the file.
        self._recent = RecentRecords(RECENT_BYTES)
        # Damaged stretches: (segment, offset) -> offset of the next whole record.
        self._skips: Dict[Tuple[int, int], int] = {}
        #: Events and bytes of damaged records skipped (at start and since).
        self.damaged_events = self.damaged_bytes = 0
        # Set when a failed write could not be cut back: the next append starts a
        # new segment, so that no record ever follows the partial one.
        self._tail_dirty = False
        self._open_directory()
        self._reader = SegmentReader(
            lambda segment: self._open(segment_name(segment), os.O_RDONLY))
        found = recover(self._dir, self.path, self._ack_fd)
        self._ack = found.ack
        self._sizes: Dict[int, int] = found.sizes  # segment -> committed length
        for stretch in found.damage:
            self._skip(stretch)
        self.recovered_events = self.pending_events = found.pending_events
        self.recovered_bytes = found.pending_bytes
        self.truncated_bytes = found.truncated_bytes
        self.dropped_events = 0
        last = max(self._sizes) if self._sizes else self._ack[0]
        self._write_segment = last + 1
        self._write_fd = self._create_segment(self._write_segment)
        self._sizes[self._write_segment] = 0

    @classmethod
    def from_config(cls, section: SpoolSection) -> "Spool":
        """The spool that ``spool.*`` describes."""
        return cls(section.path, max_bytes=section.max_bytes, segment_bytes=section.segment_bytes,
                   fsync=section.fsync, fsync_interval=section.fsync_interval)

    # -- start-up ---------------------------------------------------------------

    def _open_directory(self) -> None:
        try:
            self._dir = open_private_directory(self.path)
        except UnsafePathError as exc:
            raise SpoolError(f"spool.path: {exc}") from None
        try:
            self._lock_fd = self._open("lock", os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            os.close(self._dir)
            raise SpoolError(f"spool.path: cannot open {self._name('lock')}: "
                             f"{exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            os.close(self._dir)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise SpoolError(
                    f"spool.path: {self.path} is in use by another publisher; "
                    "give each publisher its own spool.path"
                ) from None
            raise
        self._ack_fd = self._open("ack", os.O_RDWR | os.O_CREAT)
        if os.fstat(self._ack_fd).st_size == 0:
            # Reserve the ack's block now: a full disk must not fail an ack later.
            try:
                os.posix_fallocate(self._ack_fd, 0, len(pack_ack(Position(0, 0, 0))))
            except OSError:
                pass  # the first ack's write reports it, and the sender retries

    def _name(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _open(self, name: str, flags: int) -> int:
        """Open a file of the spool directory (never through a symlink)."""
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self._dir)

    def _skip(self, stretch: Damage) -> None:
        """Note, count and log a damaged stretch: readers jump over it from now on."""
        with self._cond:
            self._skips[(stretch.segment, stretch.offset)] = stretch.resume
            self.damaged_events += stretch.events
            self.damaged_bytes += stretch.size
        logger.error(
            "spool: skipped %d damaged bytes at offset %d of %s (%s); resumed at the next "
            "whole record", stretch.size, stretch.offset,
            self._name(segment_name(stretch.segment)),
            f"a record of {stretch.events} events, lost" if stretch.events
            else "a record of unknown size, lost",
        )
        if self.on_damage is not None:
            self.on_damage(stretch.events, stretch.size)

    def _create_segment(self, number: int) -> int:
        fd = self._open(segment_name(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        if self.fsync != "never":
            os.fsync(self._dir)
        return fd

    # -- writing (the intake loop) -----------------------------------------------

    def append(self, events: List[bytes]) -> None:
        """Write ``events`` as one record; returns once they are in the file."""
        joined, lengths = join_events(events)
        self.append_joined(joined, lengths.tobytes())

    def append_joined(self, joined: bytes, lengths_bytes: bytes) -> None:
        """Write one record: events joined with commas, and their lengths (native ``u32``).

        :raises OSError: the record could not be written whole (a full disk): the
            file is as it was before (cut back), and the caller may try again.
        """
        if self._tail_dirty:
            self._rotate()  # raises while the disk still takes nothing
            self._tail_dirty = False
        count = len(lengths_bytes) // 4
        header_time_ms = int(time.time() * 1000)
        parts = pack_record(joined, lengths_bytes, header_time_ms)
        size = sum(map(len, parts))
        good = self._sizes[self._write_segment]
        try:
            written = os.writev(self._write_fd, parts)
            if written != size:
                raise OSError(errno.ENOSPC, f"short write to the spool ({written} of {size} "
                                            "bytes)")
            if self.fsync == "always" or (
                self.fsync == "interval"
                and time.monotonic() - self._last_sync >= self.fsync_interval
            ):
                os.fdatasync(self._write_fd)
                self._last_sync = time.monotonic()
        except OSError:
            self._cut_back(good)
            raise
        lengths = unpack_lengths(lengths_bytes)
        with self._cond:
            offset = self._sizes[self._write_segment]
            self._recent.remember(Record(self._write_segment, offset, offset + size,
                                  Chunk(joined, lengths), header_time_ms))
            self._sizes[self._write_segment] += size
            self.pending_events += count
            rotate = self._sizes[self._write_segment] >= self.segment_bytes
            self._appended += size
            if self._wake_at is not None and self._appended >= self._wake_at:
                self._wake_at = None
                self._cond.notify_all()
        if rotate:
            try:
                self._rotate()
            except OSError as exc:
                # The record is safe; a full segment only grows past its size until
                # the next append manages to start a new one.
                logger.warning("spool: cannot start a new segment (%s); retrying at the next "
                               "write", exc)
                return
            # Only whole, finished segments can be dropped, so the budget is checked
            # when one is finished: the spool exceeds it by at most a segment.
            if self.pending_bytes() > self.max_bytes:
                self._drop_oldest()

    def _cut_back(self, good: int) -> None:
        """After a failed write, cut the segment back to its last whole record.

        Should that fail too, the next append starts a new segment instead: no
        record is ever written after a partial one.
        """
        try:
            os.ftruncate(self._write_fd, good)
        except OSError as exc:
            logger.error("spool: cannot cut %s back to %d bytes after a failed write (%s); "
                         "the next record goes to a new segment",
                         self._name(segment_name(self._write_segment)), good, exc)
            self._tail_dirty = True

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
                self._recent.forget_segment(victim)
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
        """Events in the first ``size`` bytes of ``segment``, past any damaged stretch."""
        count = offset = 0
        try:
            fd = self._open(segment_name(segment), os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            while offset < size:
                with self._cond:
                    resume = self._skips.get((segment, offset))
                if resume is not None:
                    offset = resume
                    continue
                header = unpack_header(os.pread(fd, HEADER.size, offset))
                if header is None:
                    break
                count += header.event_count
                offset += header.record_size
        finally:
            os.close(fd)
        return count

    # -- reading (the sender thread) ---------------------------------------------

    def read(self, position: Position) -> Optional[Record]:
        """The record at ``position`` (or the first live one after it); ``None`` at the end.

        A damaged record is skipped (counted and logged), never returned.
        """
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
                resume = self._skips.get((segment, offset))
            if recent is not None:
                return recent
            if resume is not None:
                offset = resume
                continue
            if size is None and segment < newest:
                segment, offset = segment + 1, 0
                continue
            if size is None or offset >= size:
                if segment < newest:
                    self._reader.close(segment)
                    segment, offset = segment + 1, 0
                    continue
                return None
            record = self._reader.parse(segment, offset, size)
            if record is not None:
                return record
            # Damaged: skip to the next whole record (or the end).
            self._skip(self._reader.damage_at(segment, offset, size))

    def wait(self, timeout: float, position: Position, min_bytes: int = 1) -> None:
        """Sleep until ``min_bytes`` are spooled beyond ``position``, or ``timeout`` passes.

        Appends wake the reader only once that much is there, so a busy intake
        loop does not hand the GIL to the sender for every record.
        """
        with self._cond:
            missing = min_bytes - self._bytes_after(position)
            if missing > 0:
                self._wake_at = self._appended + missing
                self._cond.wait(timeout)
                self._wake_at = None

    def _bytes_after(self, position: Position) -> int:
        segment, offset = max(Position(*position).place, self._ack.place)
        after = max(0, self._sizes.get(segment, 0) - offset)
        return after + sum(size for number, size in self._sizes.items() if number > segment)

    def rewind(self) -> None:
        """The sender dropped what it held and starts again from the ack position."""
        with self._cond:
            self._horizon = self._ack.place

    def wake(self) -> None:
        """Wake a reader sleeping in :meth:`wait` (at shutdown)."""
        with self._cond:
            self._cond.notify_all()

    def ack(self, position: Position, events: int) -> None:
        """The collector has everything before ``position``; forget it."""
        position = Position(*position)
        with self._cond:
            if position <= self._ack:
                return  # already past it (the budget dropped that segment)
            old_segment = self._ack[0]
            self._ack = position
            self.pending_events = max(0, self.pending_events - events)
            self._recent.forget_before(position.place)
            for number in [n for n in self._sizes if n < position[0]]:
                del self._sizes[number]
            self._write_ack()
        for number in range(old_segment, position[0]):
            self._reader.close(number)
            self._unlink(number)

    def _write_ack(self) -> None:
        os.pwrite(self._ack_fd, pack_ack(self._ack), 0)
        if self.fsync == "always":
            os.fdatasync(self._ack_fd)

    def _unlink(self, segment: int) -> None:
        try:
            os.unlink(segment_name(segment), dir_fd=self._dir)
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
            with self._cond:
                while (number, start) in self._skips:
                    start = self._skips[(number, start)]
            if start >= size:
                continue
            try:
                fd = self._open(segment_name(number), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                header = unpack_header(os.pread(fd, HEADER.size, start))
            finally:
                os.close(fd)
            if header is not None:
                return header.time_ms
        return None

    def sync(self) -> None:
        """Make every record appended so far durable, whatever ``spool.fsync`` says."""
        os.fdatasync(self._write_fd)

    def destroy(self) -> None:
        """Remove the spool's files and close it; its directory too, if nothing else is there.

        For a spool whose events were all moved elsewhere (see ``upgrade.py``).
        """
        self._reader.close_all()
        for name in os.listdir(self._dir):
            if segment_number(name) is not None or name in ("ack", "lock"):
                os.unlink(name, dir_fd=self._dir)
        for fd in (self._write_fd, self._ack_fd, self._lock_fd, self._dir):
            os.close(fd)
        try:
            os.rmdir(self.path)
        except OSError:
            pass  # dead letters or a health file stay

    def close(self) -> None:
        """Sync and close every file; the lock goes with them."""
        self._reader.close_all()
        if self.fsync != "never":
            os.fdatasync(self._write_fd)
            os.fdatasync(self._ack_fd)
        os.close(self._write_fd)
        os.close(self._ack_fd)
        os.close(self._lock_fd)
        os.close(self._dir)

