"""Fault injection with an event ledger: outages, slowness, refusals and kills lose nothing.

Each test puts events with known uuids through a real queue into the real
publisher subprocess, makes the collector (or the publisher) misbehave, and
then checks the ledger: every uuid put is delivered or, if the collector
refused it, in the dead-letter file. Duplicates are allowed (at-least-once).
"""
from __future__ import annotations

import pytest
import json
import signal
import time
from pathlib import Path
from typing import Callable


from tests.support.collector import LocalCollector, free_port
from tests.support.publisher import SECRET, Ledger, PublisherProcess

pytestmark = pytest.mark.system


def test_collector_down_then_up(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """Events drained while nothing listens are spooled and sent once the collector starts."""
    port = free_port()
    publisher = publisher_for(f"127.0.0.1:{port}").start()
    ledger.feed(60)
    publisher.wait_for_log("unreachable")
    with LocalCollector(SECRET, version="2j", port=port) as collector:
        collector.wait_for_events(60)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")
    assert [] == collector.problems


def test_queue_keeps_draining_during_an_outage(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """While the collector is down the queue never fills: 100 puts into a 10-message queue."""
    port = free_port()
    publisher = publisher_for(f"127.0.0.1:{port}", **{"shutdown.deadline": "0.3"}).start()
    started = time.monotonic()
    ledger.feed(100)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while ledger.queue.depth and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert 0 == publisher.stop()
    assert "100 events" in publisher.log().splitlines()[-2]


def test_slow_collector_timeouts(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """Answers slower than collector.timeout are retried until the collector is quick again."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.delay = 0.6
        publisher = publisher_for(collector.hostname, **{"collector.timeout": "0.2"}).start()
        ledger.feed(30)
        publisher.wait_for_log("no complete answer within collector.timeout (0.2s)")
        collector.delay = 0
        collector.wait_for_events(30)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")


def test_413_on_large_bodies(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """A collector that takes at most 1000-byte bodies gets split batches; nothing is lost."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.max_body = 1000
        publisher = publisher_for(collector.hostname, **{"batch.max_wait": "0.3"}).start()
        ledger.feed(60)
        collector.wait_for_events(60)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")
    assert 413 in collector.answers
    assert all(len(r.body) <= 1000 for r in collector.received)


def test_poison_event_is_dead_lettered(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """The one event drawing 422 lands in the dead-letter file; all others are delivered."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = publisher_for(collector.hostname, **{"batch.max_wait": "0.3"}).start()
        ledger.feed(20)
        poison_ids = ledger.feed(1, size=300)
        collector.poison = lambda e: e.get("uuid") == poison_ids[0]
        ledger.feed(20)
        collector.wait_for_events(40)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, dead)
    [letter] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert (422, "poison event") == (letter["status"], letter["reason"])
    assert poison_ids[0] not in collector.uuids()


def test_403_for_a_while(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """403s keep the events and log loudly; they go out once the collector accepts the key."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(1.5, status=403)
        publisher = publisher_for(collector.hostname).start()
        ledger.feed(30)
        collector.wait_for_events(30)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")
    assert "collector REFUSED OUR CREDENTIALS (403" in publisher.log()
    assert not (tmp_path / "spool" / "dead-letter.jsonl").exists()


def test_connection_reset_mid_request(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """Connections reset mid-request are retried; nothing is lost."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.reset_next = 3
        publisher = publisher_for(collector.hostname).start()
        ledger.feed(30)
        collector.wait_for_events(30)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")


def test_sigterm_during_outage_then_restart(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """SIGTERM with the collector down exits 0 at the deadline; the next start sends it all."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(60)
        publisher = publisher_for(collector.hostname, **{"shutdown.deadline": "0.5"}).start()
        ledger.feed(40)
        assert 0 == publisher.stop()
        assert "stay in the spool" in publisher.log().splitlines()[-2]
        collector.fail_for(0)
        publisher.start()
        collector.wait_for_events(40)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")


def test_sigkill_then_restart(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """kill -9 in the middle of a stream, then a restart: every event arrives (maybe twice)."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.delay = 0.1
        publisher = publisher_for(collector.hostname, **{"batch.max_bytes": "800"}).start()
        ledger.feed(60)
        # Kill once the queue is drained (what the publisher took is now only in its
        # spool) while the slow collector still has most of it to come.
        deadline = time.monotonic() + 5
        while ledger.queue.depth and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        assert publisher.process is not None
        publisher.process.send_signal(signal.SIGKILL)
        publisher.wait()
        collector.delay = 0
        delivered_before_kill = len(set(collector.uuids()))
        publisher.start()
        ledger.feed(10)
        collector.wait_for_events(70)
        deadline = time.monotonic() + 10
        while ledger.missing(collector, tmp_path / "x") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 == publisher.stop()
    assert delivered_before_kill < 60
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")


def logged_drops(log: str) -> int:
    """Events the publisher's log says it dropped from an over-budget spool."""
    marker = "dropped the oldest "
    return sum(
        int(line.split(marker)[1].split()[0]) for line in log.splitlines() if marker in line
    )


def test_spool_over_budget_drops_oldest_counted(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """Over spool.max_bytes old events are dropped, and the log counts every one exactly."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(60)
        keys = {
            "spool.max_bytes": "8192",
            "spool.segment_bytes": "2048",
            "batch.max_bytes": "800",
            "drain.max_messages": "10",
        }
        publisher = publisher_for(collector.hostname, **keys).start()
        ledger.feed(150)
        collector.fail_for(0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(set(collector.uuids())) + logged_drops(publisher.log()) >= 150:
                break
            time.sleep(0.05)
        assert 0 == publisher.stop()
    delivered = set(collector.uuids())
    dropped = logged_drops(publisher.log())
    assert dropped > 0
    assert 150 == len(delivered) + dropped
    # What went is one run of the oldest events, after the ones the sender already
    # held (those were sent); the newest survive.
    gone = [i for i, u in enumerate(ledger.put) if u not in delivered]
    assert list(range(gone[0], gone[0] + dropped)) == gone
    assert ledger.put[-1] in delivered


def test_repeated_sigkill_under_full_load(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """kill -9 at random moments while a producer keeps the queue full: nothing is lost."""
    import random
    import threading

    with LocalCollector(SECRET, version="2j") as collector:
        publisher = publisher_for(collector.hostname, **{"batch.max_bytes": "2000"}).start()
        feeding = threading.Thread(target=ledger.feed, args=(400,))
        feeding.start()
        rng = random.Random(8)
        for _ in range(4):
            time.sleep(rng.uniform(0.02, 0.15))
            assert publisher.process is not None
            publisher.process.send_signal(signal.SIGKILL)
            publisher.wait()
            publisher.start()
        feeding.join(30)
        deadline = time.monotonic() + 15
        while ledger.missing(collector, tmp_path / "x") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 == publisher.stop()
    assert 400 == len(ledger.put)
    assert set() == ledger.missing(collector, tmp_path / "spool" / "dead-letter.jsonl")
