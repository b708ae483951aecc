"""The evidence rule: refused events are dead-lettered only once the collector took others.

The Deliverer runs against the real strict collector; only sleep is faked (the
rig records each backoff), so every answer sequence below is exact.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from publisher.send.batches import BatchBuilder, build_body
from publisher.send.dead_letters import DeadLetters, encode

from tests.support.batching import chunk_of
from tests.support.collector import LocalCollector
from tests.support.publisher import SECRET, make_event
from tests.system.test_publisher_sending import Rig, events

pytestmark = pytest.mark.system


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(SECRET, version="2j") as c:
        yield c


def batch_of(batch: List[bytes]) -> BatchBuilder:
    builder = BatchBuilder("2j", 1 << 20)
    builder.add(chunk_of(batch))
    return builder


def probes(*batches: Optional[List[bytes]]) -> Callable[[], Optional[BatchBuilder]]:
    """A ``more`` that hands out ``batches`` in turn (None: nothing ready), then nothing."""
    waiting = list(batches)

    def more() -> Optional[BatchBuilder]:
        batch = waiting.pop(0) if waiting else None
        return batch_of(batch) if batch is not None else None

    return more


def deliver(rig: Rig, batch: List[bytes], more=None) -> bool:
    return rig.deliverer.deliver(build_body("2j", batch), len(batch), lambda: list(batch), more)


def letters(rig: Rig) -> List[tuple]:
    return [(d["status"], json.loads(d["event"])["uuid"]) for d in rig.dead_letters()]


def test_500_drawn_bisect_after_5xx_times_is_bisected(collector: LocalCollector, tmp_path: Path):
    """A poison 500: the batch tried 3 times, then halves split at once, the event tried 3 times."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(8)
    collector.poison = lambda e: e["uuid"] == ids[5]
    collector.poison_status = 500
    assert deliver(rig, batch)
    # [0:8] x3, [0:4], [4:8], [4:6], [4:5], [5:6] x3, [6:8]
    assert [500] * 3 + [200] + [500] * 2 + [200] + [500] * 3 + [200] == collector.answers
    assert [i for i in ids if i != ids[5]] == collector.uuids()
    assert [(500, ids[5])] == letters(rig)
    assert 4 == len(rig.sleeps)


def test_500_fewer_times_than_bisect_after_5xx_is_retried_whole(
    collector: LocalCollector, tmp_path: Path
):
    """Two 500s and then a 200: the batch is retried as it is, never split."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(2, 500)
    batch, ids = events(4)
    assert deliver(rig, batch)
    assert [ids] == [[e["uuid"] for e in r.events] for r in collector.received]
    assert 2 == len(rig.sleeps)
    assert 0 == rig.metrics.totals["split"]


def test_an_outage_between_500s_starts_the_count_again(collector: LocalCollector, tmp_path: Path):
    """500, 503, 500, 500, 200: never three 500s in a row, so the batch is never split."""
    rig = Rig(collector, tmp_path)
    collector.answer_next(500, 503, 500, 500)
    batch, ids = events(4)
    assert deliver(rig, batch)
    assert [500, 503, 500, 500, 200] == collector.answers
    assert [ids] == [[e["uuid"] for e in r.events] for r in collector.received]


def test_blanket_400_backs_off_and_dead_letters_nothing(collector: LocalCollector, tmp_path: Path):
    """50 refusals of 1000 events: 10 POSTs down to one, the rest at once, then a backoff each."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(50, 400)
    batch, ids = events(1000)
    assert deliver(rig, batch)
    assert 40 == len(rig.sleeps)
    assert sorted(ids) == sorted(collector.uuids())
    assert [] == rig.dead_letters()


def test_blanket_500_backs_off_and_dead_letters_nothing(collector: LocalCollector, tmp_path: Path):
    """Twelve 500s to a 4-event batch: each 500 but a part's last one waits; none is lost."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(12, 500)
    batch, ids = events(4)
    assert deliver(rig, batch)
    # [0:4] x3, [0:2] x3, [0:1] x3 (held), the rest [1:4] x3, wait, [1:2], [0:1], [2:4]
    assert [500] * 12 + [200] * 3 == collector.answers
    assert 9 == len(rig.sleeps)
    assert sorted(ids) == sorted(collector.uuids())
    assert [] == rig.dead_letters()


def test_held_events_are_retried_together_once_something_is_accepted(
    collector: LocalCollector, tmp_path: Path
):
    """Six 400s, then the collector takes everything: the held event goes out at once."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(6, 400)
    batch, ids = events(8)
    assert deliver(rig, batch)
    # [0:8], [0:4], [0:2], [0:1] held, the rest [1:8], wait, [1:4], wait, [1:2], [0:1], ...
    assert [400] * 6 + [200] * 4 == collector.answers
    assert [[ids[1]], [ids[0]], ids[2:4], ids[4:]] == [
        [e["uuid"] for e in r.events] for r in collector.received
    ]
    assert 2 == len(rig.sleeps)


def test_a_lone_refused_event_waits_while_nothing_else_is_accepted(
    collector: LocalCollector, tmp_path: Path
):
    """One refused event and nothing else spooled: retried after backoffs, never set aside."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(1)
    collector.poison = lambda e: e["uuid"] == ids[0]
    rig.stop_after = 4
    assert not deliver(rig, batch, probes())
    assert [422] * 4 == collector.answers
    assert 4 == len(rig.sleeps)
    assert all(2**i / 2 <= delay <= 2**i for i, delay in enumerate(rig.sleeps))
    assert [] == rig.dead_letters()


def test_a_lone_refused_event_is_set_aside_once_a_later_batch_is_accepted(
    collector: LocalCollector, tmp_path: Path
):
    """Nothing ready twice, then a good batch: once it is accepted the event is set aside."""
    rig = Rig(collector, tmp_path)
    bad, bad_ids = events(1)
    good, good_ids = events(1)
    collector.poison = lambda e: e["uuid"] == bad_ids[0]
    assert deliver(rig, bad, probes(None, None, good))
    assert [422, 422, 422, 200, 422] == collector.answers
    assert good_ids == collector.uuids()
    assert [(422, bad_ids[0])] == letters(rig)
    assert 2 == len(rig.sleeps)


@pytest.mark.parametrize("status", [502, 503, 504, None])
def test_an_outage_never_dead_letters(collector: LocalCollector, tmp_path: Path, status):
    """Twenty 502/503/504 answers or resets: the batch waits and arrives whole."""
    rig = Rig(collector, tmp_path)
    if status is None:
        collector.reset_next = 20
    else:
        collector.fail_requests(20, status)
    batch, ids = events(3)
    assert deliver(rig, batch, probes(events(1)[0]))
    assert (ids, 20) == (collector.uuids(), len(rig.sleeps))
    assert [] == rig.dead_letters()


def test_a_first_event_refused_is_isolated_without_a_backoff(
    collector: LocalCollector, tmp_path: Path
):
    """The bad event is reached before anything is accepted; the rest, sent at once, proves it."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(8)
    collector.poison = lambda e: e["uuid"] == ids[0]
    assert deliver(rig, batch)
    assert ids[1:] == collector.uuids()
    assert [(422, ids[0])] == letters(rig)
    assert [] == rig.sleeps
    assert [ids[1:]] == [[e["uuid"] for e in r.events] for r in collector.received]


def test_a_refused_event_in_each_half_are_both_isolated(collector: LocalCollector, tmp_path: Path):
    """Events 0 and 6 of 8 refused: both dead-lettered, the six others delivered in order."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(8)
    collector.poison = lambda e: e["uuid"] in (ids[0], ids[6])
    assert deliver(rig, batch)
    assert [i for n, i in enumerate(ids) if n not in (0, 6)] == collector.uuids()
    assert [(422, ids[0]), (422, ids[6])] == letters(rig)


def test_413_single_event_is_dead_lettered_once_a_later_batch_is_accepted(
    collector: LocalCollector, tmp_path: Path
):
    """An event too large for the collector alone is set aside once a smaller batch got through."""
    rig = Rig(collector, tmp_path)
    big, small = make_event(0, size=2000), make_event(1)
    collector.max_body = len(build_body("2j", [small])) + 1
    assert deliver(rig, [big], probes([small]))
    assert [(413, json.loads(big)["uuid"])] == letters(rig)
    assert [json.loads(small)["uuid"]] == collector.uuids()


def test_dead_letters_beyond_max_bytes_are_counted_and_logged(
    collector: LocalCollector, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """With room for one line, the second refused event is dropped, counted and logged."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(4)
    collector.poison = lambda e: e["uuid"] in (ids[1], ids[3])
    [line] = encode([batch[1]], "q", 422, "poison event")
    rig.deliverer.dead_letters = DeadLetters(str(rig.dead_path), "q", max_bytes=len(line) + 10)
    with caplog.at_level(logging.ERROR, logger="publisher.delivery"):
        assert deliver(rig, batch)
    assert [(422, ids[1])] == letters(rig)
    assert (1, 1) == (rig.metrics.totals["dead_letter"], rig.metrics.totals["dead_letter.dropped"])
    expected = (
        f"dead-letter file {rig.dead_path} is full (dead_letter.max_bytes="
        f"{rig.deliverer.dead_letters.max_bytes}): DROPPED 1 refused events; "
        "replay or archive the file to make room"
    )
    assert expected in caplog.messages



def test_a_dead_letter_file_that_cannot_be_written_keeps_the_event(
    collector: LocalCollector, tmp_path: Path
):
    """While the dead-letter file cannot be written the deliverer backs off; then it is written."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(2)
    collector.poison = lambda e: e["uuid"] == ids[1]
    rig.dead_path.mkdir()  # a directory where the file should be: every write fails
    sleep = rig.sleep

    def mend_on_second_sleep(seconds: float) -> bool:
        if len(rig.sleeps) == 1:
            rig.dead_path.rmdir()
        return sleep(seconds)

    rig.deliverer.sleep = mend_on_second_sleep
    assert deliver(rig, batch)
    assert 2 == len(rig.sleeps)
    assert [(422, ids[1])] == letters(rig)
    assert [ids[0]] == collector.uuids()


def test_stopping_while_the_dead_letter_file_cannot_be_written_keeps_the_batch(
    collector: LocalCollector, tmp_path: Path
):
    """A stop during that backoff leaves the batch unfinished, for the spool to keep."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(2)
    collector.poison = lambda e: e["uuid"] == ids[1]
    rig.dead_path.mkdir()
    rig.stop_after = 1
    assert not deliver(rig, batch)


def test_a_batch_of_bad_events_is_set_aside_once_the_next_batch_is_accepted(
    collector: LocalCollector, tmp_path: Path
):
    """Four refused events and a good batch ready: it is sent at once, then all four set aside."""
    rig = Rig(collector, tmp_path)
    bad, bad_ids = events(4)
    good, good_ids = events(3)
    collector.poison = lambda e: e["uuid"] in bad_ids
    assert deliver(rig, bad, probes(good))
    # [0:4], [0:2], [0:1] held, the rest [1:4], the probe, then [0:1], [1:2], [2:4], [2:3], [3:4]
    assert [422] * 4 + [200] + [422] * 5 == collector.answers
    assert good_ids == collector.uuids()
    assert [(422, i) for i in bad_ids] == letters(rig)
    assert [] == rig.sleeps


def test_after_a_refused_probe_the_next_event_alone_is_the_evidence(
    collector: LocalCollector, tmp_path: Path
):
    """Two batches of bad events: after a backoff the event behind them is sent alone, and taken."""
    rig = Rig(collector, tmp_path)
    bad, bad_ids = events(2)
    probe, probe_ids = events(2)
    good, good_ids = events(1)
    collector.poison = lambda e: e["uuid"] in bad_ids + probe_ids
    beyond = list(good)
    assert rig.deliverer.deliver(build_body("2j", bad), 2, lambda: list(bad), probes(probe),
                                 lambda: beyond.pop(0) if beyond else None)
    # [0:2], [0:1] held, the rest [1:2] held, the probe, wait, the peek, then each bad event
    assert [422] * 4 + [200] + [422] * 5 == collector.answers
    assert good_ids == collector.uuids()
    assert sorted(bad_ids + probe_ids) == sorted(uuid for _, uuid in letters(rig))
    assert 1 == len(rig.sleeps)


def test_peek_walks_the_spooled_events_one_by_one_and_leaves_the_cursor(tmp_path: Path):
    """Peeking past two records yields each event in order, then None; the cursor stays."""
    from publisher.send.assembler import Assembler
    from publisher.spool.store import Spool

    spool = Spool(str(tmp_path / "spool"), fsync="never")
    try:
        spool.append([b'{"n":1}', b'{"n":2}'])
        spool.append([b'{"n":3}'])
        assembler = Assembler(spool, "2j", 1 << 20, 1.0)
        start = assembler.cursor
        position, seen = start, []
        for _ in range(4):
            event, position = assembler.peek(position)
            seen.append(event)
        assert [b'{"n":1}', b'{"n":2}', b'{"n":3}', None] == seen
        assert start == assembler.cursor
    finally:
        spool.close()


def test_an_event_peeked_during_a_blanket_refusal_is_peeked_again_on_a_quiet_stream(
    collector: LocalCollector, tmp_path: Path
):
    """Peeks start over at the spool's end: a good event refused by an outage is the evidence."""
    from publisher.send.assembler import Assembler, Peeker
    from publisher.spool.store import Spool

    rig = Rig(collector, tmp_path)
    rig.stop_after = 20  # stuck, it would back off for ever
    bad, bad_ids = events(1)
    probe, probe_ids = events(1)
    good, good_ids = events(1)
    collector.poison = lambda e: e["uuid"] in bad_ids + probe_ids
    collector.fail_requests(3, 400)  # the batch, the probe and the first peek: refused
    spool = Spool(str(tmp_path / "spool"), fsync="never")
    try:
        spool.append(good)
        assembler = Assembler(spool, "2j", 1 << 20, 1.0)
        start = assembler.cursor
        delivered = rig.deliverer.deliver(build_body("2j", bad), 1, lambda: list(bad),
                                          probes(probe), Peeker(assembler, lambda: start))
    finally:
        spool.close()
    assert delivered
    # [B] held, the probe [B2] held, wait, the peek [G] (all refused), [B, B2], [B] held,
    # [B2] held, wait, [G] peeked again and taken, then [B, B2], [B], [B2] set aside.
    assert [400] * 3 + [422] * 3 + [200] + [422] * 3 == collector.answers
    assert good_ids == collector.uuids()
    assert sorted((422, i) for i in bad_ids + probe_ids) == sorted(letters(rig))
    assert 2 == len(rig.sleeps)


def test_peeker_starts_again_after_the_last_spooled_event(tmp_path: Path):
    """Peeker hands out each event after its start, then the first one again; none: None."""
    from publisher.send.assembler import Assembler, Peeker
    from publisher.spool.store import Spool

    spool = Spool(str(tmp_path / "spool"), fsync="never")
    try:
        assembler = Assembler(spool, "2j", 1 << 20, 1.0)
        start = assembler.cursor
        peek = Peeker(assembler, lambda: start)
        empty = peek()
        spool.append([b'{"n":1}', b'{"n":2}'])
        spool.append([b'{"n":3}'])
        seen = [peek() for _ in range(5)]
        assert (None, [b'{"n":1}', b'{"n":2}', b'{"n":3}', b'{"n":1}', b'{"n":2}']) == (empty, seen)
        assert start == assembler.cursor
    finally:
        spool.close()
