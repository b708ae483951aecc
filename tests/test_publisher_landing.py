"""The landing zone: events received into a file-backed page survive the process."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

from baseplate_events.message_queue import MessageQueue
from publisher.landing import Landing, collect_leftovers, landing_directory, remove_landings

from .support_collector import Collector
from .support_publisher import (
    QUEUE_MESSAGE_SIZE,
    QUEUE_MESSAGES,
    SECRET,
    PublisherProcess,
    config_keys,
    make_event,
    put_all,
    uuids_of,
    write_config,
)


def test_unspooled_slots_are_left_over_in_order(
    reader: MessageQueue, tmp_path: Path
):
    """Messages received but not yet cleared are found by the next process, in order."""
    landing = Landing(str(tmp_path), 4, reader.max_message_size)
    for message in (b'{"n":1}', b'{"n":2}', b'{"n":3}'):
        reader.put(message)
    assert [b'{"n":1}', b'{"n":2}', b'{"n":3}'] == landing.receive(reader.fileno(), 4)
    landing.buf.flush()
    assert [b'{"n":1}', b'{"n":2}', b'{"n":3}'] == collect_leftovers(str(tmp_path))
    landing.clear()
    assert [] == collect_leftovers(str(tmp_path))
    landing.close()


def test_length_word_lost_is_recovered_from_the_data(reader: MessageQueue, tmp_path: Path):
    """A process killed between mq_receive and the length word still leaves the event."""
    landing = Landing(str(tmp_path), 2, reader.max_message_size)
    reader.put(b'{"n":1}')
    landing.receive(reader.fileno(), 2)
    struct.pack_into("<Q", landing.buf, 0, 0)  # as if it died before writing the length
    assert [b'{"n":1}'] == collect_leftovers(str(tmp_path))
    landing.clear()
    landing.close()


def test_remove_landings(tmp_path: Path, reader: MessageQueue):
    """remove_landings deletes every landing file of the directory."""
    landing = Landing(str(tmp_path), 2, 64)
    remove_landings(str(tmp_path))
    landing.close()
    assert [] == list(tmp_path.glob("landing-*"))


def test_leftovers_are_delivered_at_start(
    queue_name: str, tmp_path: Path, open_queues: Callable[..., MessageQueue]
):
    """Events a killed publisher received but never spooled are sent by the next one."""
    queue = open_queues("/events-" + queue_name, QUEUE_MESSAGES, QUEUE_MESSAGE_SIZE)
    events = [make_event(1), make_event(2)]
    put_all(queue, events)
    with Collector(SECRET, version="2j") as collector:
        keys = config_keys(queue_name, collector.hostname, tmp_path,
                           **{"spool.path": str(tmp_path / "spool")})
        path = write_config(tmp_path / "publisher.ini", queue_name, keys)
        # A predecessor that died right after mq_receive: the events sit in a landing file.
        landing = Landing(landing_directory(str(tmp_path / "spool")), 4, QUEUE_MESSAGE_SIZE)
        assert events == landing.receive(queue.fileno(), 4)
        publisher = PublisherProcess(queue_name, path, tmp_path / "p.log").start()
        try:
            collector.wait_for_events(2)
            assert 0 == publisher.stop()
        finally:
            publisher.kill()
            landing.close()
    assert uuids_of(events) == collector.uuids()
    assert "landing: spooled 2 events that a previous process took off the queue" in (
        publisher.log()
    )


def test_landing_off_still_delivers(
    queue_name: str, tmp_path: Path, open_queues: Callable[..., MessageQueue]
):
    """drain.landing = off drains with plain receives and delivers everything."""
    with Collector(SECRET, version="2j") as collector:
        keys = config_keys(queue_name, collector.hostname, tmp_path, **{"drain.landing": "off"})
        path = write_config(tmp_path / "publisher.ini", queue_name, keys)
        publisher = PublisherProcess(queue_name, path, tmp_path / "p.log").start()
        try:
            queue = open_queues("/events-" + queue_name, QUEUE_MESSAGES, QUEUE_MESSAGE_SIZE)
            events = [make_event(i) for i in range(30)]
            put_all(queue, events)
            collector.wait_for_events(30)
            assert 0 == publisher.stop()
        finally:
            publisher.kill()
    assert uuids_of(events) == collector.uuids()
