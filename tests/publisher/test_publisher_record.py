"""The spool record's bytes: the C gather, its ctypes twin and the spool all make record.py's."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from publisher.intake.landing import receiver
from publisher.spool.framing import HEADER, MAGIC, join_events, pack_record
from publisher.spool.framing import unpack_events, unpack_header
from publisher.spool.store import Spool

from tests.publisher.test_publisher_landing import IMPLEMENTATIONS

EVENTS = [b'{"n":1}', b'{"a":"xyz"}', b"[]", b'{"long":"' + b"x" * 300 + b'"}']


def ring_of(events: list) -> bytearray:
    """A landing ring holding ``events``: each an 8-byte word (length, top bit set), 8-aligned."""
    ring = bytearray(4096)
    offset = 0
    for event in events:
        struct.pack_into("<Q", ring, offset, len(event) | 1 << 63)
        ring[offset + 8 : offset + 8 + len(event)] = event
        offset = (offset + 8 + len(event) + 7) & ~7
    return ring


def test_join_events_bytes():
    """A record's two parts: the events joined with commas, and native u32 lengths."""
    joined, lengths = join_events(EVENTS[:3])
    expected = (b'{"n":1},{"a":"xyz"},[]', struct.pack("=III", 7, 11, 2))
    assert expected == (joined, lengths.tobytes())


@pytest.mark.system
@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_gather_makes_the_bytes_of_join_events(kind: str):
    """The C gather and its ctypes twin give, byte for byte, join_events' two parts."""
    ring = ring_of(EVENTS)
    end = 8 * 4 + sum((len(e) + 7) & ~7 for e in EVENTS)
    joined, lengths = join_events(EVENTS)
    assert (joined, lengths.tobytes(), end) == receiver(kind).gather(ring, end)


def test_pack_record_bytes():
    """A record is header (magic, count, length, CRC-32 of the rest, ms), lengths, events."""
    joined, lengths = join_events(EVENTS[:2])
    crc = zlib.crc32(lengths.tobytes() + joined)
    header = struct.pack("<IIIIQ", MAGIC, 2, len(joined), crc, 1234)
    assert [header, lengths.tobytes(), joined] == pack_record(joined, lengths.tobytes(), 1234)


def test_spool_writes_pack_record_bytes(tmp_path: Path):
    """What the spool appends is exactly pack_record's bytes, and unpacks to the events."""
    spool = Spool(str(tmp_path / "s"), fsync="never")
    spool.append(EVENTS)
    spool.close()
    (segment,) = sorted(tmp_path.joinpath("s").glob("*.seg"))
    data = segment.read_bytes()
    header = unpack_header(data)
    assert header is not None
    joined, lengths = join_events(EVENTS)
    assert b"".join(pack_record(joined, lengths.tobytes(), header.time_ms)) == data
    events, unpacked = unpack_events(data, 0, header)
    assert (joined, list(lengths)) == (bytes(events), list(unpacked))
    assert HEADER.size + 4 * len(EVENTS) + len(joined) == header.record_size
