"""The spool's disk format: segment names, the ack file and the position it holds.

Only this module packs, unpacks and checks these bytes; the records inside a
segment are :mod:`publisher.spool.framing`'s. A :class:`SpooledRecord` is one record
read back, at its place.

A segment file (``00000000000000000001.seg``) is a run of records, appended.

The ``ack`` file holds the position of the first event not yet accepted:
magic, segment, byte offset of its record, index in the record, CRC-32.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

from publisher.spool.chunk import Chunk

ACK_MAGIC = 0xBE5BA001
ACK = struct.Struct("<IQQII")
SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"[0-9]{1,20}\.seg")


class Position(NamedTuple):
    """A place in the spool: a record (segment, byte offset) and events of it already consumed."""

    segment: int
    offset: int
    taken: int

    @property
    def place(self) -> Tuple[int, int]:
        """The record this position is in: (segment, byte offset)."""
        return self.segment, self.offset

    def taken_in(self, record: SpooledRecord) -> int:
        """How many events of ``record`` lie before this position."""
        return self.taken if (record.segment, record.offset) == self.place else 0

    @classmethod
    def inside(cls, record: SpooledRecord, taken: int) -> "Position":
        """After the first ``taken`` events of ``record``."""
        return cls(record.segment, record.offset, taken)

    @classmethod
    def after(cls, record: SpooledRecord) -> "Position":
        """Just after the whole of ``record``: the start of the next one."""
        return cls(record.segment, record.next_offset, 0)


def segment_name(number: int) -> str:
    return f"{number:020d}{SUFFIX}"


def segment_number(name: str) -> Optional[int]:
    """The number of a segment file's name; ``None`` for any other name."""
    return int(name[: -len(SUFFIX)]) if _SEGMENT_NAME.fullmatch(name) else None


def pack_ack(position: Position) -> bytes:
    data = ACK.pack(ACK_MAGIC, *position, 0)[:-4]
    return data + struct.pack("<I", zlib.crc32(data))


def unpack_ack(data: bytes) -> Optional[Position]:
    """The position in an ack file; ``None`` if it is missing, empty (zeros) or damaged."""
    if len(data) != ACK.size:
        return None
    magic, segment, offset, index, crc = ACK.unpack(data)
    if magic != ACK_MAGIC or crc != zlib.crc32(data[:-4]):
        return None
    return Position(segment, offset, index)


@dataclass
class SpooledRecord:
    """One record read back from the spool."""

    segment: int
    offset: int
    next_offset: int
    chunk: Chunk
    time_ms: int

    def rest(self, position: Position) -> Chunk:
        """The events of this record at or after ``position``."""
        taken = position.taken_in(self)
        return self.chunk.split(taken)[1] if taken else self.chunk
