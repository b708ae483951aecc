"""The write-ahead spool: every event taken off the queue is on disk before it can be lost.

The intake loop appends each wake-up's events as one *record* to the current
segment file (one ``writev``); the sender reads records back, batches and
sends them, then moves the *ack* position past what the collector accepted.
A ``kill -9`` therefore loses nothing: on start the spool replays everything
after the ack position (at-least-once; a batch in flight may be sent twice).

Layout of ``spool.path`` (opened by :mod:`publisher.spool.directory`)::

    lock                      flock()ed by the running publisher
    ack                       the first event not yet accepted: segment, offset, index
    00000000000000000001.seg  records, appended; rotated at spool.segment_bytes

A write that fails or comes up short (a full disk) is cut back to the last
whole record before the error is raised, so no record ever follows a partial
one. A damaged record costs that record only: readers skip to the next whole
one, and the loss is logged and counted. When the spool outgrows
``spool.max_bytes`` the oldest segments are dropped, and the events in them
are counted and logged: the one explicit loss policy.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from publisher.config.sections import SpoolSection
from publisher.spool.chunk import Chunk
from publisher.spool.directory import SpoolError, open_in, open_spool_directory
from publisher.spool.damage import Damage, DamageLedger
from publisher.spool.format import Position, SpooledRecord, pack_ack, segment_name, segment_number
from publisher.spool.framing import join_events, pack_record, unpack_lengths
from publisher.spool.writer import SegmentWriter
from publisher.spool.reader import ReadView, RecentRecords, SegmentReader
from publisher.spool.recovery import recover

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.spool")

#: Event bytes of the newest records kept in memory for the sender.
RECENT_BYTES = 4 << 20

__all__ = ["Position", "Spool", "SpoolError", "SpooledRecord"]


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
        self.on_drop = on_drop
        self._cond = threading.Condition(threading.Lock())
        self._horizon: Tuple[int, int] = (0, 0)
        # Bytes appended since start, and the total at which a waiting reader wants
        # waking: the sender sleeps until a batch's worth is there, not per record.
        self._appended = 0
        self._wake_at: Optional[int] = None
        # The newest records, as appended: the sender, normally right behind the
        # writer, takes them from here instead of reading them back from the file.
        self._recent = RecentRecords(RECENT_BYTES)
        #: Called with (events, bytes) when the reader skips a damaged record.
        self.on_damage = on_damage
        self._damage = DamageLedger()
        self._dir, self._lock_fd, self._ack_fd = open_spool_directory(path)
        self._writer = SegmentWriter(self._open, self._dir, path, fsync, fsync_interval)
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
        self._writer.fd = self._writer.create(self._write_segment)
        self._sizes[self._write_segment] = 0

    @classmethod
    def from_config(cls, section: SpoolSection) -> "Spool":
        """The spool that ``spool.*`` describes."""
        return cls(section.path, max_bytes=section.max_bytes, segment_bytes=section.segment_bytes,
                   fsync=section.fsync, fsync_interval=section.fsync_interval)

    # -- start-up ---------------------------------------------------------------

    def _name(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _open(self, name: str, flags: int) -> int:
        """Open a file of the spool directory (never through a symlink)."""
        return open_in(self._dir, name, flags)

    def _skip(self, stretch: Damage) -> None:
        """Note, count and log a damaged stretch: readers jump over it from now on."""
        with self._cond:
            self._damage.add(stretch)
        self._damage.report(stretch, self._name(segment_name(stretch.segment)))
        if self.on_damage is not None:
            self.on_damage(stretch.events, stretch.size)

    @property
    def damaged_events(self) -> int:
        """Events of damaged records skipped (at start and since)."""
        return self._damage.events

    @property
    def damaged_bytes(self) -> int:
        """Bytes of damaged records skipped (at start and since)."""
        return self._damage.bytes

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
        if self._writer.dirty:
            self._rotate()  # raises while the disk still takes nothing
            self._writer.dirty = False
        count = len(lengths_bytes) // 4
        header_time_ms = int(time.time() * 1000)
        parts = pack_record(joined, lengths_bytes, header_time_ms)
        size = sum(map(len, parts))
        good = self._sizes[self._write_segment]
        self._writer.write(parts, size, good, self._write_segment)
        lengths = unpack_lengths(lengths_bytes)
        with self._cond:
            offset = self._sizes[self._write_segment]
            self._recent.remember(SpooledRecord(self._write_segment, offset, offset + size,
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

    def _rotate(self) -> None:
        fd = self._writer.create(self._write_segment + 1)
        old = self._writer.fd
        with self._cond:
            self._write_segment += 1
            self._writer.fd = fd
            self._sizes[self._write_segment] = 0
        self._writer.retire(old)

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
            events = self._reader.count_events(victim, size, self._resume_at)
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

    def _resume_at(self, segment: int, offset: int) -> Optional[int]:
        """Where a damaged stretch at (segment, offset) ends; ``None`` if none starts there."""
        with self._cond:
            return self._damage.get(segment, offset)

    # -- reading (the sender thread) ---------------------------------------------

    def read(self, position: Position) -> Optional[SpooledRecord]:
        """The record at ``position`` (or the first live one after it); ``None`` at the end.

        A damaged record is skipped (counted and logged), never returned.
        """
        segment, offset, _taken = position
        while True:
            view = self._look(segment, offset)
            if view.recent is not None:
                return view.recent
            place = view.next_place()
            if place is None:
                if view.size is None or view.offset >= view.size:
                    return None  # the end of what is spooled
                record = self._reader.parse(view.segment, view.offset, view.size)
                if record is not None:
                    return record
                # Damaged: noted by _skip, so the next look jumps to the next whole record.
                self._skip(self._reader.damage_at(view.segment, view.offset, view.size))
                place = view.segment, view.offset
            elif place[0] != view.segment:
                self._reader.close(view.segment)
            segment, offset = place

    def _look(self, segment: int, offset: int) -> ReadView:
        """What :meth:`read` needs to know of (segment, offset), taken under the lock."""
        with self._cond:
            if segment < self._ack[0]:
                segment, offset = self._ack[0], self._ack[1]
            size = self._sizes.get(segment)
            if size is not None and (segment, offset) > self._horizon:
                # From here on this segment is the sender's: the budget keeps off it.
                self._horizon = (segment, offset)
            return ReadView(segment, offset, size, self._write_segment,
                            self._recent.get((segment, offset)),
                            self._damage.get(segment, offset))

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
                start = self._damage.past(number, start)
            if start < size:
                time_ms = self._reader.time_ms_at(number, start)
                if time_ms is not None:
                    return time_ms
        return None

    def sync(self) -> None:
        """Make every record appended so far durable, whatever ``spool.fsync`` says."""
        self._writer.sync()

    def destroy(self) -> None:
        """Remove the spool's files and close it; its directory too, if nothing else is there.

        For a spool whose events were all moved elsewhere (see :mod:`.upgrade`).
        """
        self._reader.close_all()
        for name in os.listdir(self._dir):
            if segment_number(name) is not None or name in ("ack", "lock"):
                os.unlink(name, dir_fd=self._dir)
        for fd in (self._writer.fd, self._ack_fd, self._lock_fd, self._dir):
            os.close(fd)
        try:
            os.rmdir(self.path)
        except OSError:
            pass  # dead letters or a health file stay

    def close(self) -> None:
        """Sync and close every file; the lock goes with them."""
        self._reader.close_all()
        self._writer.retire(self._writer.fd)
        if self.fsync != "never":
            os.fdatasync(self._ack_fd)
        os.close(self._ack_fd)
        os.close(self._lock_fd)
        os.close(self._dir)

