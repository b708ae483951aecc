"""How the sender gets spooled records back: from memory when it keeps up, else from the file.

The sender is normally right behind the intake loop, so the newest records
are kept as appended (:class:`RecentRecords`, up to ``spool.RECENT_BYTES``
of events) and taken from there. A sender that fell behind (an outage, a
restart) reads them back from the segment files through
:class:`SegmentReader`: one ``pread`` brings many records, each checked whole
(:func:`publisher.spool.framing.check_record`) before it is trusted. Locking is the
spool's: these classes hold no lock of their own.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from publisher.spool.framing import HEADER, check_record, next_record, unpack_events, unpack_header
from publisher.spool.chunk import Chunk
from publisher.spool.damage import Damage, damage
from publisher.spool.format import SpooledRecord

#: Bytes the sender reads from a segment at once.
_READ_AHEAD = 256 * 1024


class ReadView(NamedTuple):
    """What the spool knows of one place in it, taken under its lock for one step of a read."""

    segment: int
    offset: int
    #: Committed bytes of the segment; ``None`` once it is gone (acknowledged or dropped).
    size: Optional[int]
    #: The segment being written.
    newest: int
    #: The record here, if it is still in memory.
    recent: Optional[SpooledRecord]
    #: Where a damaged stretch starting here ends; ``None`` if none does.
    resume: Optional[int]

    def next_place(self) -> Optional[Tuple[int, int]]:
        """Where to read instead of here: past a damaged stretch, or the next segment.

        ``None``: read here, or (at the end of the newest segment) nothing is left.
        """
        if self.resume is not None:
            return self.segment, self.resume
        finished = self.size is None or self.offset >= self.size
        if finished and self.segment < self.newest:
            return self.segment + 1, 0
        return None


class RecentRecords(Dict[Tuple[int, int], SpooledRecord]):
    """The newest records by (segment, offset), as appended, up to ``limit`` bytes of events."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0

    def remember(self, record: SpooledRecord) -> None:
        """Keep ``record``, dropping the oldest beyond ``limit``."""
        self[(record.segment, record.offset)] = record
        self.size += len(record.chunk.joined)
        while self.size > self.limit:
            self.forget(next(iter(self)))

    def forget(self, key: Tuple[int, int]) -> None:
        record = self.pop(key)
        self.size -= len(record.chunk.joined)

    def forget_segment(self, segment: int) -> None:
        """Forget every record of ``segment`` (dropped by the budget)."""
        for key in [k for k in self if k[0] == segment]:
            self.forget(key)

    def forget_before(self, place: Tuple[int, int]) -> None:
        """Forget every record before (segment, offset) ``place`` (acknowledged)."""
        for key in [k for k in self if k < place]:
            self.forget(key)


class SegmentReader:
    """Reads and checks records from segment files, through a read-ahead buffer.

    ``open_segment`` opens a segment file of the spool directory for reading.
    """

    def __init__(self, open_segment: Callable[[int], int]) -> None:
        self._open_segment = open_segment
        self._fds: Dict[int, int] = {}
        self._buf = b""
        self._buf_segment = -1
        self._buf_start = 0

    def parse(self, segment: int, offset: int, size: int) -> Optional[SpooledRecord]:
        """Decode and check the record at ``offset`` of ``segment`` (``size`` bytes long).

        ``None`` if the bytes there are not a whole, undamaged record.
        """
        buf, start = self._buf, self._buf_start
        if (
            self._buf_segment != segment
            or offset < start
            or offset + HEADER.size > start + len(buf)
        ):
            buf, start = self._fill(segment, offset, size, HEADER.size)
        at = offset - start
        header = unpack_header(buf, at)
        if header is None or header.record_size > size - offset:
            return None
        if at + header.record_size > len(buf):
            buf, start = self._fill(segment, offset, size, header.record_size)
            at = 0
        if check_record(buf, at) is None:
            return None
        chunk = Chunk(*unpack_events(buf, at, header))
        return SpooledRecord(segment, offset, offset + header.record_size, chunk, header.time_ms)

    def damage_at(self, segment: int, offset: int, size: int) -> Damage:
        """The damaged stretch from ``offset`` to the next whole record (or the end)."""
        data = os.pread(self._fd(segment), size - offset, offset)
        return damage(segment, offset, offset + next_record(data, 1), unpack_header(data))

    def count_events(self, segment: int, size: int,
                     resume_at: Callable[[int, int], Optional[int]]) -> int:
        """Events in the first ``size`` bytes of ``segment``, past damaged stretches.

        ``resume_at(segment, offset)`` tells where a damaged stretch ends. Any
        thread may call this: it uses a file descriptor of its own.
        """
        count = offset = 0
        try:
            fd = self._open_segment(segment)
        except FileNotFoundError:
            return 0
        try:
            while offset < size:
                resume = resume_at(segment, offset)
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

    def time_ms_at(self, segment: int, offset: int) -> Optional[int]:
        """Append time of the record at (segment, offset); ``None`` if there is none.

        Any thread may call this: it uses a file descriptor of its own.
        """
        try:
            fd = self._open_segment(segment)
        except FileNotFoundError:
            return None
        try:
            header = unpack_header(os.pread(fd, HEADER.size, offset))
        finally:
            os.close(fd)
        return None if header is None else header.time_ms

    def _fill(self, segment: int, offset: int, size: int, need: int) -> Tuple[bytes, int]:
        # One pread brings many records: written moments ago, they are in the page cache.
        want = min(max(_READ_AHEAD, need), size - offset)
        self._buf = os.pread(self._fd(segment), want, offset)
        self._buf_segment, self._buf_start = segment, offset
        return self._buf, offset

    def _fd(self, segment: int) -> int:
        fd = self._fds.get(segment)
        if fd is None:
            fd = self._open_segment(segment)
            self._fds[segment] = fd
        return fd

    def close(self, segment: int) -> None:
        """Close ``segment``'s file, if it is open."""
        fd = self._fds.pop(segment, None)
        if fd is not None:
            os.close(fd)

    def close_all(self) -> None:
        for segment in list(self._fds):
            self.close(segment)
