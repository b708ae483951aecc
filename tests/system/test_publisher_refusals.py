"""Refusals against the real publisher process: poison 500s, blanket 400/500, a lone bad event.

As in test_publisher_faults, every uuid put must end up delivered or, when
the collector refused it while accepting others, in the dead-letter file.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Callable, List

import pytest

from tests.support.collector import LocalCollector
from tests.support.publisher import SECRET, Ledger, PublisherProcess

pytestmark = pytest.mark.system


def dead_letters(path: Path) -> List[tuple]:
    """(status, uuid) of each line of the dead-letter file."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [(d["status"], json.loads(d["event"])["uuid"]) for d in lines]


def at_most_posts(seconds: float) -> int:
    """POSTs a blanket refusal of ``seconds`` may draw: each one after the first held event
    (or each repeated 5xx) waits at least half of retry.backoff_initial, 0.05 s in the test
    config, and the descent to that event takes a few more. The old policy made thousands."""
    return int(seconds / 0.025) + 20


def test_poison_500_is_bisected_and_the_rest_delivered(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """An event that makes the collector answer 500 is dead-lettered; the stream goes on."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    with LocalCollector(SECRET, version="2j") as collector:
        collector.poison_status = 500
        publisher = publisher_for(collector.hostname, **{"batch.max_wait": "0.3"}).start()
        ledger.feed(20)
        poison_ids = ledger.feed(1)
        collector.poison = lambda e: e.get("uuid") == poison_ids[0]
        ledger.feed(20)
        collector.wait_for_events(40)
        publisher.wait_for_log("written to the dead-letter file")
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, dead)
    assert [(500, poison_ids[0])] == dead_letters(dead)
    assert "(retry.bisect_after_5xx); taking it for a refusal of their content" in publisher.log()


@pytest.mark.parametrize("status, seconds", [(400, 1.5), (500, 3.0)])
def test_a_blanket_refusal_backs_off_and_dead_letters_nothing(
    publisher_for: Callable[..., PublisherProcess],
    ledger: Ledger,
    tmp_path: Path,
    status: int,
    seconds: float,
):
    """A collector refusing everything for a while gets few POSTs, and then every event."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(seconds, status)
        publisher = publisher_for(collector.hostname).start()
        ledger.feed(30)
        collector.wait_for_events(30, timeout=20)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "x")
    assert not (tmp_path / "spool" / "dead-letter.jsonl").exists()
    assert collector.answers.count(status) <= at_most_posts(seconds)
    assert (
        f"collector REFUSED EVENTS ({status}: scripted {status}) and has accepted nothing since"
        in publisher.log()
    )


def test_a_lone_bad_event_waits_until_a_later_one_is_accepted(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """A refused event alone on a quiet stream is kept; the next accepted event sets it aside."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    with LocalCollector(SECRET, version="2j") as collector:
        collector.poison = lambda e: e.get("n") == 0
        publisher = publisher_for(collector.hostname).start()
        [bad] = ledger.feed(1)
        publisher.wait_for_log("collector REFUSED EVENTS (422: poison event)", count=3)
        assert ([], []) == (dead_letters(dead), collector.uuids())
        [good] = ledger.feed(1)
        collector.wait_for_events(1)
        publisher.wait_for_log("written to the dead-letter file")
        assert 0 == publisher.stop()
    assert [good] == collector.uuids()
    assert [(422, bad)] == dead_letters(dead)


def test_a_held_event_stays_in_the_spool_at_shutdown_and_goes_out_once_fixed(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """SIGTERM while a refused event waits for evidence: exit 0, kept, delivered after a fix."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    with LocalCollector(SECRET, version="2j") as collector:
        collector.poison = lambda e: e.get("n") == 0
        publisher = publisher_for(collector.hostname, **{"shutdown.deadline": "0.3"}).start()
        [held] = ledger.feed(1)
        publisher.wait_for_log("collector REFUSED EVENTS (422: poison event)")
        assert 0 == publisher.stop()
        assert "1 events" in publisher.log().splitlines()[-2]
        collector.poison = None
        publisher.start()
        collector.wait_for_events(1)
        assert 0 == publisher.stop()
    assert ([held], []) == (collector.uuids(), dead_letters(dead))


def test_kill_9_during_a_blanket_refusal_loses_and_dead_letters_nothing(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """kill -9 while a blanket 400 holds events and a probe: the next start delivers them all."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(60, 400)
        publisher = publisher_for(collector.hostname, **{"batch.max_bytes": "2000"}).start()
        ledger.feed(100)
        publisher.wait_for_log("collector REFUSED EVENTS (400: scripted 400)", count=3)
        assert publisher.process is not None
        publisher.process.send_signal(signal.SIGKILL)
        publisher.wait()
        collector.fail_for(0)
        publisher.start()
        collector.wait_for_events(100)
        assert 0 == publisher.stop()
    assert set() == ledger.missing(collector, tmp_path / "x")
    assert not (tmp_path / "spool" / "dead-letter.jsonl").exists()


def test_a_long_run_of_bad_events_does_not_hold_back_the_good_ones_behind_it(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """Four batches of refused events, then good ones: the good arrive, the bad are set aside."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    with LocalCollector(SECRET, version="2j") as collector:
        collector.poison = lambda e: e.get("n", 99) < 20
        publisher = publisher_for(collector.hostname, **{"batch.max_bytes": "800",
                                                         "batch.max_wait": "0.3"}).start()
        bad = ledger.feed(20)
        good = ledger.feed(10)
        deadline = time.monotonic() + 20
        while len(dead_letters(dead)) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        collector.wait_for_events(10)
        assert 0 == publisher.stop()
    assert set(good) == set(collector.uuids())
    assert sorted(bad) == sorted(uuid for _, uuid in dead_letters(dead))


def test_good_events_peeked_during_a_blanket_refusal_go_out_once_it_ends_on_a_quiet_stream(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """Bad events, one good one peeked while all was refused: once fixed, it is peeked again."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(60, 400)
        publisher = publisher_for(collector.hostname, **{"batch.max_bytes": "400"}).start()
        bad = ledger.feed(10)
        [good] = ledger.feed(1)
        # The batch, the probe, then a peek per backoff: 8 peeks reach the good event.
        publisher.wait_for_log("collector REFUSED EVENTS (400: scripted 400)", count=20)
        collector.poison = lambda e: e.get("n", 99) < 10
        collector.fail_for(0)
        collector.wait_for_events(1)
        deadline = time.monotonic() + 20
        while len(dead_letters(dead)) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 == publisher.stop()
    assert good in collector.uuids()
    assert sorted(bad) == sorted(uuid for _, uuid in dead_letters(dead))
