"""The spool's disk format: segment names, the record header and the ack file.

Only this module packs, unpacks and checks these bytes; ``spool.py`` calls it.

A segment file (``00000000000000000001.seg``) is a run of records, appended.
A record is a 24-byte header (magic, event count, payload length, CRC-32 of
what follows the header, append time in ms, little-endian), the event
lengths (``count`` × native u32) and the events joined with commas. Records
are not aligned: after damage, a reader finds the next one by its magic and
checks it whole (bounds and CRC) before trusting it.

The ``ack`` file holds the position of the first event not yet accepted:
magic, segment, byte offset of its record, index in the record, CRC-32.
"""
from __future__ import annotations

import re
import struct
import zlib
from typing import NamedTuple, Optional

MAGIC = 0xBE5B0001
HEADER = struct.Struct("<IIIIQ")
_MAGIC_BYTES = struct.pack("<I", MAGIC)
ACK_MAGIC = 0xBE5BA001
ACK = struct.Struct("<IQQII")
SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"[0-9]{1,20}\.seg")


class Header(NamedTuple):
    """A record's header, as read (not yet checked)."""

    event_count: int
    length: int
    crc: int
    time_ms: int

    @property
    def record_size(self) -> int:
        """Header, lengths and events: the bytes from this record to the next."""
        return HEADER.size + 4 * self.event_count + self.length


class Position(NamedTuple):
    """A place in the spool: a record (segment, byte offset) and events of it already consumed."""

    segment: int
    offset: int
    taken: int


def segment_name(number: int) -> str:
    return f"{number:020d}{SUFFIX}"


def segment_number(name: str) -> Optional[int]:
    """The number of a segment file's name; ``None`` for any other name."""
    return int(name[: -len(SUFFIX)]) if _SEGMENT_NAME.fullmatch(name) else None


def pack_header(count: int, lengths: bytes, joined: bytes, time_ms: int) -> bytes:
    crc = zlib.crc32(joined, zlib.crc32(lengths))
    return HEADER.pack(MAGIC, count, len(joined), crc, time_ms)


def unpack_header(data: bytes, at: int = 0) -> Optional[Header]:
    """The header at ``data[at:]``; ``None`` if it is short or its magic is wrong."""
    if len(data) - at < HEADER.size:
        return None
    magic, count, length, crc, time_ms = HEADER.unpack_from(data, at)
    return Header(count, length, crc, time_ms) if magic == MAGIC else None


def check_record(data: bytes, at: int) -> Optional[Header]:
    """The header of the whole, undamaged record at ``data[at:]``; ``None`` if it is not one."""
    header = unpack_header(data, at)
    if header is None or header.record_size > len(data) - at:
        return None
    body = memoryview(data)[at + HEADER.size : at + header.record_size]
    return header if zlib.crc32(body) == header.crc else None


def next_record(data: bytes, start: int) -> int:
    """Offset of the first whole, undamaged record at or after ``start``; ``len(data)`` if none."""
    at = start
    while True:
        at = data.find(_MAGIC_BYTES, at)
        if at < 0:
            return len(data)
        if check_record(data, at) is not None:
            return at
        at += 1


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
