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

import pytest

from publisher.intake.landing import landing_path
from publisher.spool.store import Spool

from tests.support.collector import LocalCollector
from tests.support.publisher import SECRET, PublisherProcess, make_event, uuids_of

pytestmark = pytest.mark.system

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def private_copy(source: Path, target: Path) -> None:
    """Copy a fixture directory as the publisher left it: mode 0700, files 0600."""
    shutil.copytree(source, target)
    os.chmod(target, 0o700)
    for path in target.iterdir():
        os.chmod(path, 0o600)


def run_until_delivered(start_publisher: Callable[..., PublisherProcess],
                        count: int) -> LocalCollector:
    """Start the publisher on ``tmp_path/spool``, wait for ``count`` events, stop it."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector)
        collector.wait_for_events(count)
        assert 0 == publisher.stop()
    assert [] == collector.problems
    return collector


@pytest.mark.usefixtures("publisher_queue")  # the queue is there before the publisher
def test_a_spool_and_landing_zone_of_b162c1d_are_replayed(
    tmp_path: Path, start_publisher: Callable[..., PublisherProcess]
):
    """Every pending event of the old spool and of the old landing ring is delivered."""
    expected = json.loads((FIXTURES / "b162c1d.json").read_text())
    private_copy(FIXTURES / "spool-b162c1d", tmp_path / "spool")
    landing = Path(landing_path(str(tmp_path / "spool")))
    private_copy(FIXTURES / "landing-b162c1d", landing)
    try:
        collector = run_until_delivered(start_publisher, 16)
    finally:
        shutil.rmtree(landing, ignore_errors=True)
    assert sorted(expected["spool"] + expected["landing"]) == sorted(collector.uuids())


@pytest.mark.usefixtures("publisher_queue")  # the queue is there before the publisher
def test_a_flipped_byte_in_the_spool_costs_one_record_counted(
    tmp_path: Path, start_publisher: Callable[..., PublisherProcess]
):
    """One damaged record on restart: the others are delivered; its loss is logged and counted."""
    records = [[make_event(3 * r + i) for i in range(3)] for r in range(4)]
    spool = Spool(str(tmp_path / "spool"), fsync="always")
    for record in records:
        spool.append(record)
    spool.close()
    segment = tmp_path / "spool" / "00000000000000000001.seg"
    data = bytearray(segment.read_bytes())
    data[len(data) * 3 // 8] ^= 0x01  # in the middle of the second of four equal records
    segment.write_bytes(bytes(data))
    collector = run_until_delivered(start_publisher, 9)
    survivors = records[0] + records[2] + records[3]
    assert uuids_of(survivors) == collector.uuids()
    counters = json.loads((tmp_path / "spool" / "health.json").read_text())["counters"]
    size = len(data) // 4
    assert (3, size) == (counters["dropped.spool_damaged"], counters["spool.damaged_bytes"])
    log = (tmp_path / "publisher.log").read_text()
    assert (
        f"spool: skipped {size} damaged bytes at offset {size} of {segment} (a record of 3 "
        "events, lost); resumed at the next whole record"
    ) in log
