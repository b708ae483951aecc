"""A full disk under the spool: the publisher stops draining, says so, resumes, loses nothing.

The spool sits on a 1 MiB tmpfs (mounting it needs root: the tests skip
without).
"""
from __future__ import annotations

import pytest
import json
import os
import time
from pathlib import Path
from typing import Callable

from baseplate_events.errors import EventQueueFullError
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.runtime.event_queue import EventQueue
from publisher.intake.landing import Landing, landing_directory

from tests.conftest import fill_disk
from tests.support.collector import LocalCollector, free_port
from tests.support.landing import receive
from tests.support.publisher import (
    QUEUE_MESSAGE_SIZE,
    QUEUE_MESSAGES,
    SECRET,
    PublisherProcess,
    make_event,
    put_all,
    uuids_of,
)

pytestmark = pytest.mark.system

STALLED = "stopped taking events off the queue"


def test_a_full_disk_stops_the_drain_and_every_event_taken_is_delivered(
    queue_name: str, small_disk: str, publisher_for: Callable[..., PublisherProcess]
):
    """Disk full in an outage: the queue backs up, a log line, then it resumes by itself."""
    port = free_port()  # nothing listens there until the end: nothing is acked meanwhile
    publisher = publisher_for(f"127.0.0.1:{port}", **{
        "spool.path": os.path.join(small_disk, "spool")}).start()
    app = EventQueue(queue_name, max_messages=QUEUE_MESSAGES,
                     max_message_size=QUEUE_MESSAGE_SIZE)
    filler = os.path.join(small_disk, "filler")
    accepted = []
    refused = 0
    try:
        fill_disk(filler, leave=64 << 10)
        deadline = time.monotonic() + 30
        while STALLED not in publisher.log() or refused < 20:
            assert time.monotonic() < deadline, publisher.log()
            event = make_event(len(accepted) + refused, size=1000)
            try:
                app.put_serialized(event)
                accepted.append(event)
            except EventQueueFullError:
                refused += 1
                time.sleep(0.05)
        assert QUEUE_MESSAGES == app.queue.depth  # backed up: the apps see a full queue
        time.sleep(2.5)  # still full: retried every second, logged once
        assert 1 == publisher.log().count(STALLED)

        os.unlink(filler)
        publisher.wait_for_log("spool: writable again after")
        more = [make_event(10_000 + i, size=1000) for i in range(50)]
        put_all(app.queue, more)
        accepted.extend(more)
        health = Path(small_disk, "spool", "health.json")
        while json.loads(health.read_text())["counters"]["spool.write_error"] == 0:
            assert time.monotonic() < deadline + 30, health.read_text()
            time.sleep(0.05)
        counters = json.loads(health.read_text())["counters"]
        # A restart reads the spool back from the file: no partial record is in it.
        assert 0 == publisher.stop()
        publisher.start()
        with LocalCollector(SECRET, version="2j", port=port) as collector:
            collector.wait_for_events(len(accepted), timeout=30)
            assert 0 == publisher.stop()
    finally:
        app.queue.close()
    assert sorted(set(uuids_of(accepted))) == sorted(set(collector.uuids()))
    assert [] == collector.problems
    assert counters["spool.write_error"] >= 2
    assert 0 == counters["dropped.spool_error"]
    assert [] == [line for line in publisher.log().splitlines()
                  if "torn bytes" in line or "damaged" in line]


def test_leftovers_found_on_a_full_disk_at_start_wait_for_room(
    small_disk: str, publisher_queue: MessageQueue, start_publisher: Callable[..., PublisherProcess]
):
    """A predecessor's landing ring, a full disk at start: kept, spooled once there is room."""
    events = [make_event(1, size=1000), make_event(2, size=1000)]
    put_all(publisher_queue, events)
    spool_path = os.path.join(small_disk, "spool")
    landing = Landing(landing_directory(spool_path), 1 << 16, QUEUE_MESSAGE_SIZE)
    assert 2 == receive(landing, publisher_queue.fileno(), 4)  # then "killed" before spooling them
    filler = os.path.join(small_disk, "filler")
    fill_disk(filler)
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"spool.path": spool_path})
        try:
            publisher.wait_for_log(STALLED)
            os.unlink(filler)
            collector.wait_for_events(2)
            assert 0 == publisher.stop()
        finally:
            landing.close()
    assert uuids_of(events) == collector.uuids()
    assert "landing: spooled 2 events that a previous process took off the queue" in (
        publisher.log())
