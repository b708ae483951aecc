"""Upgrades and damage: what an earlier publisher left on disk is replayed by this one.

The fixtures under ``tests/fixtures`` were written by the publisher of commit
b162c1d (``tests/fixtures/make_b162c1d.py`` says how).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from baseplate_events.message_queue import MessageQueue
from publisher.landing import landing_path
from publisher.spool import Spool

from .support_collector import Collector
from .support_publisher import (
    QUEUE_MESSAGE_SIZE,
    QUEUE_MESSAGES,
    SECRET,
    PublisherProcess,
    config_keys,
    make_event,
    uuids_of,
    write_config,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def private_copy(source: Path, target: Path) -> None:
    """Copy a fixture directory as the publisher left it: mode 0700, files 0600."""
    shutil.copytree(source, target)
    os.chmod(target, 0o700)
    for path in target.iterdir():
        os.chmod(path, 0o600)


def run_until_delivered(queue_name: str, tmp_path: Path, count: int) -> Collector:
    """Start the publisher on ``tmp_path/spool``, wait for ``count`` events, stop it."""
    with Collector(SECRET, version="2j") as collector:
        keys = config_keys(queue_name, collector.hostname, tmp_path)
        path = write_config(tmp_path / "publisher.ini", queue_name, keys)
        publisher = PublisherProcess(queue_name, path, tmp_path / "p.log").start()
        try:
            collector.wait_for_events(count)
            assert 0 == publisher.stop()
        finally:
            publisher.kill()
    assert [] == collector.problems
    return collector


def test_a_spool_and_landing_zone_of_b162c1d_are_replayed(
    queue_name: str, tmp_path: Path, open_queues: Callable[..., MessageQueue]
):
    """Every pending event of the old spool and of the old landing ring is delivered."""
    open_queues("/events-" + queue_name, QUEUE_MESSAGES, QUEUE_MESSAGE_SIZE)
    expected = json.loads((FIXTURES / "b162c1d.json").read_text())
    private_copy(FIXTURES / "spool-b162c1d", tmp_path / "spool")
    landing = Path(landing_path(str(tmp_path / "spool")))
    private_copy(FIXTURES / "landing-b162c1d", landing)
    try:
        collector = run_until_delivered(queue_name, tmp_path, 16)
    finally:
        shutil.rmtree(landing, ignore_errors=True)
    assert sorted(expected["spool"] + expected["landing"]) == sorted(collector.uuids())


def test_a_flipped_byte_in_the_spool_costs_one_record_counted(
    queue_name: str, tmp_path: Path, open_queues: Callable[..., MessageQueue]
):
    """One damaged record on restart: the others are delivered; its loss is logged and counted."""
    open_queues("/events-" + queue_name, QUEUE_MESSAGES, QUEUE_MESSAGE_SIZE)
    records = [[make_event(3 * r + i) for i in range(3)] for r in range(4)]
    spool = Spool(str(tmp_path / "spool"), fsync="always")
    for record in records:
        spool.append(record)
    spool.close()
    segment = tmp_path / "spool" / "00000000000000000001.seg"
    data = bytearray(segment.read_bytes())
    data[len(data) * 3 // 8] ^= 0x01  # in the middle of the second of four equal records
    segment.write_bytes(bytes(data))
    collector = run_until_delivered(queue_name, tmp_path, 9)
    survivors = records[0] + records[2] + records[3]
    assert uuids_of(survivors) == collector.uuids()
    counters = json.loads((tmp_path / "spool" / "health.json").read_text())["counters"]
    size = len(data) // 4
    assert (3, size) == (counters["dropped.spool_damaged"], counters["spool.damaged_bytes"])
    log = (tmp_path / "p.log").read_text()
    assert (
        f"spool: skipped {size} damaged bytes at offset {size} of {segment} (a record of 3 "
        "events, lost); resumed at the next whole record"
    ) in log
