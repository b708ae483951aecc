"""The spool record: the one definition of how a wake-up's events are stored as bytes.

The intake loop appends the events it took off the queue as one *record*; the
sender reads records back and cuts batches from them. Only this module packs,
unpacks and checks a record; the spool (:mod:`.store`, :mod:`.reader`,
:mod:`.recovery`), the landing zone and the batches call it, and
``publisher/_landing.c`` mirrors :func:`join_events` (the record tests pin
both to the same bytes).

A record is a 24-byte header (magic, event count, payload length, CRC-32 of
what follows the header, append time in ms, little-endian), the event
lengths (``count`` × native u32) and the events joined with commas. Records
are not aligned: after damage, a reader finds the next one by its magic and
checks it whole (bounds and CRC) before trusting it.
"""
from __future__ import annotations

import array
import struct
import zlib
from typing import List, NamedTuple, Optional, Sequence, Tuple

MAGIC = 0xBE5B0001
HEADER = struct.Struct("<IIIIQ")
_MAGIC_BYTES = struct.pack("<I", MAGIC)


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


def join_events(events: Sequence[bytes]) -> Tuple[bytes, "array.array[int]"]:
    """A record's two parts for ``events``: them joined with commas, and their lengths (u32)."""
    return b",".join(events), array.array("I", map(len, events))


def unpack_lengths(data: "bytes | memoryview") -> "array.array[int]":
    """The event lengths of a record, from their bytes (native u32 each)."""
    out = array.array("I")
    out.frombytes(data)
    return out


def pack_record(joined: bytes, lengths_bytes: bytes, time_ms: int) -> List[bytes]:
    """The record's bytes, in the three parts ``writev`` writes: header, lengths, events."""
    crc = zlib.crc32(joined, zlib.crc32(lengths_bytes))
    header = HEADER.pack(MAGIC, len(lengths_bytes) // 4, len(joined), crc, time_ms)
    return [header, lengths_bytes, joined]


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


def unpack_events(data: bytes, at: int, header: Header) -> Tuple[memoryview, "array.array[int]"]:
    """The events (comma-joined, a view into ``data``) and their lengths of a checked record."""
    events = at + HEADER.size + 4 * header.event_count
    return (memoryview(data)[events : at + header.record_size],
            unpack_lengths(data[at + HEADER.size : events]))


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
