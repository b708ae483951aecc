"""The write-ahead spool on a real directory: order, acks, restarts, torn tails, the budget."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from publisher.intake import stall as stall_module
from publisher.spool import store as spool_module
from publisher.spool.store import Position, Spool, SpoolError


def drain(spool: Spool, position: Optional[Position] = None) -> Tuple[List[bytes], Position]:
    """Every event after ``position`` (default: the ack position), and the end position."""
    position = position or spool.ack_position
    out: List[bytes] = []
    while True:
        record = spool.read(position)
        if record is None:
            return out, position
        out.extend(record.rest(position).events())
        position = Position.after(record)


def ev(i: int) -> bytes:
    return b'{"n":%d}' % i


def test_append_then_read_in_order(tmp_path: Path):
    """Records come back in the order written, across segment rotations."""
    spool = Spool(str(tmp_path / "s"), segment_bytes=100, fsync="never")
    for i in range(0, 40, 4):
        spool.append([ev(i), ev(i + 1), ev(i + 2), ev(i + 3)])
    events, _ = drain(spool)
    assert [ev(i) for i in range(40)] == events
    assert 40 == spool.pending_events
    spool.close()


def test_restart_replays_after_the_ack_position(tmp_path: Path):
    """After an ack in the middle of a record, a new spool replays exactly the rest."""
    spool = Spool(str(tmp_path / "s"), fsync="never")
    spool.append([ev(0), ev(1), ev(2)])
    spool.append([ev(3)])
    record = spool.read(spool.ack_position)
    assert record is not None
    spool.ack((record.segment, record.offset, 2), 2)
    spool.close()

    again = Spool(str(tmp_path / "s"), fsync="never")
    assert [ev(2), ev(3)] == drain(again)[0]
    assert 2 == again.recovered_events
    again.close()


def test_acked_segments_are_deleted(tmp_path: Path):
    """Once everything in a segment is acknowledged its file goes away."""
    path = tmp_path / "s"
    spool = Spool(str(path), segment_bytes=512, fsync="never")
    for i in range(10):
        spool.append([ev(i) * 20])
    assert len(list(path.glob("*.seg"))) >= 3
    _, end = drain(spool)
    spool.ack(end, 10)
    # What is left: the segment holding the ack position and the one being written.
    assert len(list(path.glob("*.seg"))) <= 2
    assert (0, 0) == (spool.pending_events, spool.pending_bytes())
    spool.close()


def test_torn_tail_is_cut_on_start(tmp_path: Path):
    """A record cut short by a crash is removed on start; the records before it survive."""
    path = tmp_path / "s"
    spool = Spool(str(path), fsync="never")
    spool.append([ev(0)])
    spool.append([ev(1), ev(2)])
    spool.close()
    [segment] = sorted(path.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[:-3])

    again = Spool(str(path), fsync="never")
    assert [ev(0)] == drain(again)[0]
    assert again.truncated_bytes > 0
    again.close()


def test_over_budget_drops_the_oldest_and_counts(tmp_path: Path):
    """Past spool.max_bytes whole segments are dropped, oldest first, and counted."""
    dropped: List[int] = []
    spool = Spool(
        str(tmp_path / "s"),
        max_bytes=4096,
        segment_bytes=1024,
        fsync="never",
        on_drop=lambda events, size: dropped.append(events),
    )
    for i in range(200):
        spool.append([ev(i) + b" " * 40])
    events, _ = drain(spool)
    assert spool.pending_bytes() <= 4096
    assert 200 == len(events) + sum(dropped)
    assert [ev(i) + b" " * 40 for i in range(sum(dropped), 200)] == events
    assert sum(dropped) == spool.dropped_events
    spool.close()


def test_one_publisher_per_spool(tmp_path: Path):
    """A second publisher on the same spool.path is refused with a clear error."""
    spool = Spool(str(tmp_path / "s"), fsync="never")
    with pytest.raises(SpoolError) as info:
        Spool(str(tmp_path / "s"), fsync="never")
    expected = (
        f"spool.path: {tmp_path / 's'} is in use by another publisher; "
        "give each publisher its own spool.path"
    )
    assert expected == str(info.value)
    spool.close()


def test_spool_directory_is_private(tmp_path: Path):
    """The spool directory and its files are readable by the owner only."""
    path = tmp_path / "s"
    spool = Spool(str(path), fsync="always")
    spool.append([ev(1)])
    assert 0o700 == stat.S_IMODE(os.stat(path).st_mode)
    assert {0o600} == {stat.S_IMODE(os.stat(p).st_mode) for p in path.iterdir()}
    spool.close()


def test_recent_records_come_from_memory_and_match_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The newest records are served from memory; older ones, and a restart, from the file."""
    monkeypatch.setattr(spool_module, "RECENT_BYTES", 200)
    spool = Spool(str(tmp_path / "s"), segment_bytes=1 << 20, fsync="never")
    for i in range(0, 60, 6):
        spool.append([ev(i + k) for k in range(6)])
    records = []
    position = spool.ack_position
    while (record := spool.read(position)) is not None:
        records.append(record)
        position = (record.segment, record.next_offset, 0)
    # Read back from the file: a view into the read buffer. Kept: the appended bytes.
    assert isinstance(records[0].chunk.joined, memoryview)
    assert isinstance(records[-1].chunk.joined, bytes)
    assert records[-1] is spool._recent[(records[-1].segment, records[-1].offset)]
    assert sum(len(r.chunk.joined) for r in spool._recent.values()) <= 200
    events = [e for r in records for e in r.chunk.events()]
    assert [ev(i) for i in range(60)] == events
    spool.close()
    again = Spool(str(tmp_path / "s"), fsync="never")
    assert events == drain(again)[0]
    again.close()


def test_acked_and_dropped_records_leave_memory(tmp_path: Path):
    """Acknowledged records, and those of a segment the budget dropped, are not kept."""
    spool = Spool(str(tmp_path / "s"), max_bytes=4096, segment_bytes=512, fsync="never")
    for i in range(0, 400, 4):
        spool.append([ev(i + k) for k in range(4)])
    live = {n for n in spool._sizes}
    assert {key[0] for key in spool._recent} <= live  # nothing of a dropped segment
    events, end = drain(spool)
    spool.ack(end, len(events))
    assert {} == spool._recent
    spool.close()


def records_of(spool: Spool) -> List[spool_module.SpooledRecord]:
    out = []
    position = spool.ack_position
    while (record := spool.read(position)) is not None:
        out.append(record)
        position = Position.after(record)
    return out


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def three_records(path: Path) -> List[spool_module.SpooledRecord]:
    """A spool at ``path`` of records of 1, 2 and 1 events, closed; their positions."""
    spool = Spool(str(path), fsync="never")
    spool.append([ev(0)])
    spool.append([ev(1), ev(2)])
    spool.append([ev(3)])
    records = records_of(spool)
    spool.close()
    return records


def test_a_flipped_payload_byte_costs_that_record_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A damaged record is skipped at start, its events counted; the records after it stay."""
    path = tmp_path / "s"
    records = three_records(path)
    segment = path / "00000000000000000001.seg"
    flip(segment, records[1].offset + 24 + 8 + 3)
    again = Spool(str(path), fsync="never")
    assert [ev(0), ev(3)] == drain(again)[0]
    assert (2, records[1].next_offset - records[1].offset) == (
        again.damaged_events, again.damaged_bytes)
    assert 2 == again.recovered_events
    expected = (
        f"spool: skipped {records[1].next_offset - records[1].offset} damaged bytes at offset "
        f"{records[1].offset} of {segment} (a record of 2 events, lost); resumed at the next "
        "whole record"
    )
    assert [expected] == [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    again.close()


def test_a_flipped_header_byte_resyncs_to_the_next_record(tmp_path: Path):
    """Damage in a header (its magic) is skipped to the next whole record; bytes counted."""
    path = tmp_path / "s"
    records = three_records(path)
    flip(path / "00000000000000000001.seg", records[1].offset + 1)
    again = Spool(str(path), fsync="never")
    assert [ev(0), ev(3)] == drain(again)[0]
    assert (0, records[1].next_offset - records[1].offset) == (
        again.damaged_events, again.damaged_bytes)
    again.close()


def test_a_damaged_last_record_is_counted_and_cut(tmp_path: Path):
    """A whole last record that fails its CRC is counted as lost, not taken for a torn write."""
    path = tmp_path / "s"
    records = three_records(path)
    flip(path / "00000000000000000001.seg", records[2].offset + 30)
    again = Spool(str(path), fsync="never")
    assert [ev(0), ev(1), ev(2)] == drain(again)[0]
    assert (1, records[2].next_offset - records[2].offset) == (
        again.damaged_events, again.damaged_bytes)
    again.close()


def test_damage_met_while_reading_is_skipped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A record damaged on disk after it was written is skipped by the reader, and reported."""
    monkeypatch.setattr(spool_module, "RECENT_BYTES", 0)  # read back from the file
    damage: List[Tuple[int, int]] = []
    path = tmp_path / "s"
    spool = Spool(str(path), fsync="never", on_damage=lambda e, b: damage.append((e, b)))
    spool.append([ev(0)])
    spool.append([ev(1), ev(2)])
    spool.append([ev(3)])
    segment = path / "00000000000000000001.seg"
    size = 24 + 8 + len(ev(1)) + 1 + len(ev(2))
    offset = 24 + 4 + len(ev(0))
    flip(segment, offset + 40)
    assert [ev(0), ev(3)] == drain(spool)[0]
    assert [(2, size)] == damage
    spool.close()


def test_odd_entries_in_the_spool_directory_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A directory named like a segment, or an odd name, is warned about, not a crash."""
    path = tmp_path / "s"
    three_records(path)
    (path / "00000000000000000007.seg").mkdir()
    (path / "notes.seg").write_text("mine")
    (path / "dead-letter.jsonl").write_text("")
    again = Spool(str(path), fsync="never")
    assert [ev(i) for i in range(4)] == drain(again)[0]
    expected = [
        f"spool: skipping {path / '00000000000000000007.seg'}: a directory, not a spool file",
        f"spool: skipping {path / 'notes.seg'}: not a name the spool uses",
    ]
    assert expected == [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    again.close()


@pytest.mark.system
def test_a_failed_write_on_a_full_disk_leaves_no_partial_record(small_disk: str):
    """ENOSPC mid-record: the segment is cut back; later records follow whole ones only."""
    from tests.conftest import fill_disk

    spool = Spool(os.path.join(small_disk, "s"), fsync="always")
    spool.append([ev(0)])
    fill_disk(os.path.join(small_disk, "filler"), leave=8192)
    segment = Path(small_disk) / "s" / "00000000000000000001.seg"
    before = segment.stat().st_size
    with pytest.raises(OSError):
        spool.append([b'{"big":"%s"}' % (b"x" * 20000)])
    assert before == segment.stat().st_size
    os.unlink(os.path.join(small_disk, "filler"))
    spool.append([ev(1)])
    spool.close()
    again = Spool(os.path.join(small_disk, "s"), fsync="never")
    assert ([ev(0), ev(1)], 0, 0) == (drain(again)[0], again.truncated_bytes,
                                      again.damaged_bytes)
    again.close()


def test_a_stall_is_logged_at_once_then_once_a_minute():
    """Stall: the first failure is logged, then one a minute; recovery says how long it lasted."""
    stall = stall_module.Stall(60.0)
    logged = [stall.failed(t) for t in (100.0, 101.0, 159.0, 160.0, 161.0)]
    assert [True, False, False, True, False] == logged
    assert 62.0 == stall.recovered(162.0)
    assert None is stall.recovered(163.0)
    assert True is stall.failed(164.0)
