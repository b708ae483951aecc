"""The landing zone: events received into a file-backed page survive the process."""
from __future__ import annotations

import array
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from baseplate_events.mqueue.posix import MessageQueue
import pytest

from publisher.intake import landing as landing_module
from publisher.intake.landing import (
    Landing,
    collect_leftovers,
    landing_directory,
    landing_path,
    remove_landings,
    scan,
)
from publisher.intake.sources import LANDING_LINGER

from tests.support.collector import LocalCollector
from tests.support.landing import receive
from tests.support.publisher import (
    QUEUE_MESSAGE_SIZE,
    SECRET,
    PublisherProcess,
    make_event,
    put_all,
    uuids_of,
)


IMPLEMENTATIONS = ["c", "ctypes"]


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each test of the ring runs on the C loops and on their ctypes twin."""
    if request.param == "c" and landing_module._accelerated is None:
        if shutil.which("cc") is None:
            pytest.skip("no C compiler: publisher._landing could not be built")
        pytest.fail("publisher._landing is not built: `pip install -e .` builds it")
    return str(request.param)


@pytest.mark.system
def test_unspooled_events_are_left_over_in_order(
    reader: MessageQueue, tmp_path: Path, kind: str
):
    """Messages received but not yet cleared are found by the next process, in order."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    messages = [b'{"n":1}', b'{"n":22}', b'{"n":333}']
    for message in messages:
        reader.put(message)
    assert 3 == receive(landing, reader.fileno(), 10)
    assert messages == landing.events()
    landing.buf.flush()
    assert messages == collect_leftovers(str(tmp_path))
    landing.clear()
    assert [] == collect_leftovers(str(tmp_path))
    landing.close()


@pytest.mark.system
def test_gather_makes_one_spool_record(reader: MessageQueue, tmp_path: Path, kind: str):
    """gather: the events joined with commas and their u32 lengths, across receives."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    reader.put(b'{"a":1}')
    receive(landing, reader.fileno(), 10)
    reader.put(b'{"bb":"' + "é".encode() * 5 + b'"}')
    reader.put(b"[]")
    assert 2 == receive(landing, reader.fileno(), 10)
    joined, lengths, stop = landing.gather()
    events = [b'{"a":1}', b'{"bb":"' + "é".encode() * 5 + b'"}', b"[]"]
    assert b",".join(events) == joined
    assert [len(e) for e in events] == list(array.array("I", lengths))
    assert landing.end == stop
    assert 3 == landing.count
    landing.clear()
    assert (b"", b"", 0) == landing.gather()
    landing.close()


@pytest.mark.system
def test_receive_stops_at_the_limit_and_when_the_ring_is_full(
    reader: MessageQueue, tmp_path: Path, kind: str
):
    """A message is received only where a whole message still fits; the rest wait."""
    msgsize = reader.max_message_size
    # Room for a whole message at offsets 0 and 16, not at 32: two 7-byte events.
    landing = Landing(str(tmp_path), 24 + msgsize, msgsize, kind)
    for n in range(5):
        reader.put(b'{"n":%d}' % n)
    assert 1 == receive(landing, reader.fileno(), 1)
    assert not landing.full
    assert 1 == receive(landing, reader.fileno(), 10)
    assert landing.full
    assert 0 == receive(landing, reader.fileno(), 10)
    assert [b'{"n":0}', b'{"n":1}'] == landing.events()
    assert 3 == reader.depth
    landing.clear()
    assert not landing.full
    assert 2 == receive(landing, reader.fileno(), 10)
    landing.clear()
    assert 1 == receive(landing, reader.fileno(), 10)
    assert [b'{"n":4}'] == landing.events()
    landing.clear()
    landing.close()


@pytest.mark.system
def test_length_word_lost_is_recovered_from_the_data(
    reader: MessageQueue, tmp_path: Path, kind: str
):
    """A process killed between mq_receive and the length word still leaves the event."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    reader.put(b'{"n":1}')
    reader.put(b'{"n":2}')
    receive(landing, reader.fileno(), 2)
    struct.pack_into("<Q", landing.buf, 16, 0)  # as if it died before the second word
    assert [b'{"n":1}', b'{"n":2}'] == collect_leftovers(str(tmp_path))
    landing.clear()
    landing.close()


def test_remove_landings(tmp_path: Path, reader: MessageQueue):
    """remove_landings deletes every landing file of the directory."""
    landing = Landing(str(tmp_path), 4096, 64)
    remove_landings(str(tmp_path))
    landing.close()
    assert [] == list(tmp_path.glob("landing-*"))


@pytest.mark.system
def test_leftovers_are_delivered_at_start(
    tmp_path: Path, publisher_queue: MessageQueue, publisher_for: Callable[..., PublisherProcess]
):
    """Events a killed publisher received but never spooled are sent by the next one."""
    events = [make_event(1), make_event(2)]
    put_all(publisher_queue, events)
    with LocalCollector(SECRET, version="2j") as collector:
        # A predecessor that died right after mq_receive: the events sit in a landing file.
        landing = Landing(landing_directory(str(tmp_path / "spool")), 1 << 16,
                          QUEUE_MESSAGE_SIZE)
        assert len(events) == receive(landing, publisher_queue.fileno(), 4)
        assert events == landing.events()
        publisher = publisher_for(collector.hostname).start()
        try:
            collector.wait_for_events(2)
            assert 0 == publisher.stop()
        finally:
            landing.close()
    assert uuids_of(events) == collector.uuids()
    assert "landing: spooled 2 events that a previous process took off the queue" in (
        publisher.log()
    )


@pytest.mark.system
def test_landing_off_still_delivers(
    publisher_queue: MessageQueue, start_publisher: Callable[..., PublisherProcess]
):
    """drain.landing = off drains with plain receives and delivers everything."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"drain.landing": "off"})
        events = [make_event(i) for i in range(30)]
        put_all(publisher_queue, events)
        collector.wait_for_events(30)
        assert 0 == publisher.stop()
    assert uuids_of(events) == collector.uuids()


@pytest.mark.system
def test_drain_waits_for_the_queue_until_the_timeout(
    reader: MessageQueue, tmp_path: Path, kind: str
):
    """An empty queue: drain waits the timeout out (GIL released) and takes nothing."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    started = time.monotonic()
    assert not landing.fill(reader.fileno(), 100, -1, 0.2, 0.01, 1 << 16)
    assert 0.15 <= time.monotonic() - started < 2
    assert 0 == landing.count
    landing.close()


@pytest.mark.system
def test_drain_returns_a_linger_after_the_first_event(
    reader: MessageQueue, tmp_path: Path, kind: str
):
    """Events arriving while it waits are taken; it returns `linger` after the first."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    timer = threading.Timer(0.1, reader.put, args=(b'{"n":1}',))
    timer.start()
    started = time.monotonic()
    assert not landing.fill(reader.fileno(), 100, -1, 5.0, 0.2, 1 << 16)
    assert 0.25 <= time.monotonic() - started < 2  # 0.1 until the event, then the linger
    assert [b'{"n":1}'] == landing.events()
    timer.join()
    landing.clear()
    landing.close()


@pytest.mark.system
def test_drain_stops_at_the_limit_or_the_byte_target(
    reader: MessageQueue, tmp_path: Path, kind: str
):
    """With enough waiting, drain returns at once: `limit` events, or `until` bytes."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    for n in range(6):
        reader.put(b'{"n":%d}' % n)
    assert not landing.fill(reader.fileno(), 2, -1, 5.0, 5.0, 1 << 16)
    assert 2 == landing.count
    started = time.monotonic()
    assert not landing.fill(reader.fileno(), 100, -1, 5.0, 5.0, landing.end + 1)
    assert time.monotonic() - started < 2
    assert [b'{"n":%d}' % n for n in range(3)] == landing.events()  # one passed the target
    assert 3 == reader.depth
    landing.clear()
    landing.close()


def test_a_ring_half_zeroed_by_a_kill_in_clear_yields_no_garbage(
    reader: MessageQueue, tmp_path: Path
):
    """Killed during clear(): whatever prefix was zeroed, scan finds whole events or none."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size)
    events = [b'{"event":"number-%d"}' % n for n in range(3)]
    for event in events:
        reader.put(event)
    receive(landing, reader.fileno(), 10)
    ring = bytes(landing.buf[: landing.end])
    for zeroed in range(0, landing.end + 1):
        # clear() zeroes the first word's top byte, then everything from the front.
        half = bytearray(ring)
        half[7] = 0
        half[:zeroed] = bytes(zeroed)
        found = scan(bytes(half), reader.max_message_size)
        assert found in ([], events[:1]), (zeroed, found)
    landing.clear()
    landing.close()


def test_an_event_without_its_length_word_must_be_whole_json():
    """A zero length word with data behind it: kept if it is JSON, dropped if a fragment."""
    ring = bytearray(64)
    ring[8:15] = b'{"n":1}'
    assert [b'{"n":1}'] == scan(bytes(ring), 32)
    ring[8:10] = b"\0\0"
    assert [] == scan(bytes(ring), 32)


@pytest.mark.system
def test_drain_wakes_for_the_signal_pipe(reader: MessageQueue, tmp_path: Path, kind: str):
    """A byte on wake_fd (a signal arrived) ends the wait at once, reported as woken."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    wake_r, wake_w = os.pipe()
    try:
        timer = threading.Timer(0.1, os.write, args=(wake_w, b"\x0f"))
        timer.start()
        started = time.monotonic()
        assert landing.fill(reader.fileno(), 100, wake_r, 5.0, 5.0, 1 << 16)
        assert time.monotonic() - started < 2
        timer.join()
    finally:
        os.close(wake_r)
        os.close(wake_w)
        landing.close()


@pytest.mark.system
def test_drain_on_a_closed_descriptor_raises(tmp_path: Path, kind: str):
    """A receive error with nothing taken is raised (EBADF here), not swallowed."""
    landing = Landing(str(tmp_path), 1 << 16, 64, kind)
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(OSError):
        landing.fill(read_end, 10, -1, 0.0, 0.0, 1 << 16)
    assert 0 == landing.count
    landing.close()


@pytest.mark.system
def test_gather_stops_at_a_damaged_length_word(reader: MessageQueue, tmp_path: Path, kind: str):
    """A word another process overwrote ends the gather there: the events before it, and where."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    for n in range(3):
        reader.put(b'{"n":%d}' % n)
    assert 3 == receive(landing, reader.fileno(), 10)
    struct.pack_into("<Q", landing.buf, 16, (1 << 63) | (1 << 40))  # the second event's word
    assert (b'{"n":0}', array.array("I", [7]).tobytes(), 16) == landing.gather()
    struct.pack_into("<Q", landing.buf, 0, 7)  # the first one's, its "full" bit cleared
    assert (b"", b"", 0) == landing.gather()
    landing.clear()
    landing.close()


SCRIBBLER = """
import os, struct, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
offset, until = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
words = [struct.pack("<Q", int(w)) for w in sys.argv[4:]]
while time.monotonic() < until:
    for word in words:
        os.pwrite(fd, word, offset)
"""


def scribble(path: str, offset: int, seconds: float, *words: int) -> "subprocess.Popen[bytes]":
    """A second process that writes ``words`` in turn at ``offset`` of ``path`` for a while."""
    return subprocess.Popen([sys.executable, "-c", SCRIBBLER, path, str(offset), str(seconds),
                             *map(str, words)])


@pytest.mark.system
def test_gather_reads_each_length_word_once(reader: MessageQueue, tmp_path: Path, kind: str):
    """A word flipping between a length and garbage under gather never makes it read past."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size, kind)
    for n in range(3):
        reader.put(b'{"n":%d}' % n)
    assert 3 == receive(landing, reader.fileno(), 10)
    landing.buf.flush()
    whole = landing.gather()
    # The two words differ in one byte, so a torn read sees one or the other.
    child = scribble(landing.path, 16, 1.0, (1 << 63) | 7, (1 << 63) | (1 << 40) | 7)
    seen = set()
    while child.poll() is None:
        seen.add(landing.gather())
    child.wait()
    assert {whole, (b'{"n":0}', array.array("I", [7]).tobytes(), 16)} >= seen
    landing.clear()
    landing.close()


@pytest.mark.system
def test_a_second_process_writing_the_ring_costs_counted_events_only(
    tmp_path: Path, publisher_queue: MessageQueue, publisher_for: Callable[..., PublisherProcess]
):
    """The ring file overwritten while the publisher drains: no crash; each loss counted."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = publisher_for(collector.hostname).start()
        ring = os.path.join(landing_path(str(tmp_path / "spool")),
                            f"landing-ring-{QUEUE_MESSAGE_SIZE}")
        # Events of 120 bytes: the bad word differs from theirs in one byte only,
        # so a read torn between the two is one or the other, never a third length.
        child = scribble(ring, 0, 1.5, (1 << 63) | (1 << 40) | 120)
        events = []
        while child.poll() is None:
            batch = [make_event(len(events) + i) for i in range(10)]
            put_all(publisher_queue, batch)
            events.extend(batch)
            time.sleep(0.002)
        child.wait()
        # The ring's batch in progress may still hold a damaged word: let it go
        # (it is spooled LANDING_LINGER after its first event) before the last events.
        time.sleep(10 * LANDING_LINGER)
        last = [make_event(len(events) + i) for i in range(10)]
        put_all(publisher_queue, last)
        events.extend(last)
        deadline = time.monotonic() + 20
        while not set(uuids_of(last)) <= set(collector.uuids()):
            assert time.monotonic() < deadline, publisher.log()[-2000:]
            time.sleep(0.05)
        assert 0 == publisher.stop()
    log = publisher.log()
    lost = sum(int(n) for n in re.findall(r"landing: the ring file .* lost (\d+)", log))
    counters = json.loads((tmp_path / "spool" / "health.json").read_text())["counters"]
    delivered = set(collector.uuids())
    assert {120} == {len(e) for e in events}  # see the scribbled word
    assert lost > 0
    assert lost == counters["dropped.landing_damaged"]
    assert delivered <= set(uuids_of(events))
    assert len(events) == len(delivered) + lost


def test_a_damaged_leftover_ring_yields_the_events_before_the_damage(
    reader: MessageQueue, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A leftover ring with a garbage length word: the events before it, and an error line."""
    landing = Landing(str(tmp_path), 1 << 16, reader.max_message_size)
    for n in range(3):
        reader.put(b'{"n":%d}' % n)
    assert 3 == receive(landing, reader.fileno(), 10)
    struct.pack_into("<Q", landing.buf, 16, (1 << 63) | (1 << 40))
    landing.buf.flush()
    assert [b'{"n":0}'] == collect_leftovers(str(tmp_path))
    expected = (
        f"landing: {landing.path} is damaged at offset 16 (a length word past the end of the "
        "file); recovered the 1 events before it, the rest is lost"
    )
    assert [expected] == [r.getMessage() for r in caplog.records]
    landing.clear()
    landing.close()


def test_odd_landing_names_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A directory named like a ring, or a non-ASCII size, is skipped, not a crash."""
    (tmp_path / "landing-ring-64").mkdir()
    (tmp_path / "landing-ring-²").write_bytes(b"")
    assert [] == collect_leftovers(str(tmp_path))
    remove_landings(str(tmp_path))
    expected = [
        f"landing: skipping {tmp_path / 'landing-ring-64'}: not a regular file",
        f"landing: leaving {tmp_path / 'landing-ring-64'}: a directory, not a landing file",
    ]
    assert expected == [r.getMessage() for r in caplog.records]
    assert ["landing-ring-64"] == [p.name for p in tmp_path.iterdir()]
