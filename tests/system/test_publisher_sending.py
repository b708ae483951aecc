"""Sending and the delivery policy, against the real strict collector (only sleep is faked)."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from publisher.send.batches import build_body
from publisher.send.delivery import Backoff, DeadLetters, Deliverer
from publisher.metrics.counters import Metrics
from publisher.send.post import Poster, gzip_compress, parse_retry_after, sign

from tests.support.collector import LocalCollector
from tests.support.publisher import SECRET, make_event

pytestmark = pytest.mark.system


def test_known_answer_signature():
    """The X-Signature of a fixed body and key matches a value computed with openssl."""
    expected = "key=TestKey, mac=c841cf469fd48fb27f643dd9df4fafa471d59be19eb860f9f9ef20a6f816a8cc"
    assert expected == sign("TestKey", b"hunter2", b'[{"a":1}]')


def test_gzip_round_trip():
    """The body is a standard gzip member."""
    import gzip

    assert b"[1,2]" == gzip.decompress(gzip_compress(b"[1,2]", 6))


def test_retry_after_forms():
    """Retry-After in seconds or as an HTTP date."""
    assert 7.0 == parse_retry_after("7")
    assert 30.0 == parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", now=0.0)
    assert parse_retry_after("soon") is None


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector(SECRET, version="2j") as c:
        yield c


class Rig:
    """A Deliverer wired to the collector, with a fake sleep that records its delays."""

    def __init__(self, collector: LocalCollector, tmp_path: Path, timeout: float = 2.0) -> None:
        self.metrics = Metrics()
        self.sender = Poster(
            f"http://{collector.hostname}/v2j",
            "TestKey",
            SECRET,
            timeout=timeout,
            gzip_level=6,
            metrics=self.metrics,
        )
        self.sleeps: List[float] = []
        self.stop_after = 10_000
        self.dead_path = tmp_path / "dead.jsonl"
        self.deliverer = Deliverer(
            self.sender.post,
            "2j",
            self.metrics,
            DeadLetters(str(self.dead_path), "q"),
            Backoff(1.0, 8.0, 60.0, rng=random.Random(4)),
            self.sleep,
        )

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        return len(self.sleeps) >= self.stop_after

    def deliver(self, events: List[bytes]) -> bool:
        return self.deliverer.deliver(build_body("2j", events), len(events), lambda: list(events))

    def dead_letters(self) -> List[dict]:
        if not self.dead_path.exists():
            return []
        return [json.loads(line) for line in self.dead_path.read_text().splitlines()]


def events(n: int) -> Tuple[List[bytes], List[str]]:
    batch = [make_event(i) for i in range(n)]
    return batch, [json.loads(e)["uuid"] for e in batch]


def test_headers_path_and_signature_pass_the_strict_collector(collector: LocalCollector,
                                                             tmp_path: Path):
    """One batch is accepted by the strict collector, byte for byte."""
    rig = Rig(collector, tmp_path)
    batch, _ = events(3)
    assert rig.deliver(batch)
    assert [] == collector.problems
    assert [build_body("2j", batch)] == [r.body for r in collector.received]
    assert collector.received[0].headers["Content-Type"] == "application/json"
    assert 3 == rig.metrics.totals["sent"]


def test_one_keep_alive_connection(collector: LocalCollector, tmp_path: Path):
    """Several batches reuse one connection."""
    rig = Rig(collector, tmp_path)
    for _ in range(3):
        rig.deliver(events(1)[0])
    assert 1 == len({r.client_port for r in collector.received})
    assert 1 == rig.sender.connections


def test_a_connection_the_collector_closed_while_idle_is_replaced(
    collector: LocalCollector, tmp_path: Path
):
    """A keep-alive connection closed by the collector between batches costs no error."""
    rig = Rig(collector, tmp_path)
    rig.deliver(events(1)[0])
    collector.close_connections()
    assert rig.deliver(events(1)[0])
    assert 2 == len({r.client_port for r in collector.received})
    assert ([], 0) == (rig.sleeps, rig.metrics.totals.get("error.io", 0))


def test_5xx_is_retried_with_growing_backoff(collector: LocalCollector, tmp_path: Path):
    """Three 503s are retried after jittered, doubling waits; then the batch arrives."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(3, 503)
    batch, ids = events(2)
    assert rig.deliver(batch)
    assert ids == collector.uuids()
    assert 3 == len(rig.sleeps)
    for attempt, delay in enumerate(rig.sleeps):
        assert 2**attempt / 2 <= delay <= 2**attempt
    assert (3, 3) == (rig.metrics.totals["error.http"], rig.metrics.totals["retry"])


def test_retry_after_is_honoured(collector: LocalCollector, tmp_path: Path):
    """A 503 with Retry-After: 7 waits 7 seconds."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(1, 503, retry_after="7")
    assert rig.deliver(events(1)[0])
    assert [7.0] == rig.sleeps


def test_connection_reset_is_retried(collector: LocalCollector, tmp_path: Path):
    """A reset mid-request counts error.io and the batch is sent again."""
    rig = Rig(collector, tmp_path)
    collector.reset_next = 1
    batch, ids = events(2)
    assert rig.deliver(batch)
    assert ids == collector.uuids()
    assert 1 == rig.metrics.totals["error.io"]


def test_timeout_is_retried(collector: LocalCollector, tmp_path: Path):
    """A collector slower than collector.timeout is an I/O error, retried."""
    rig = Rig(collector, tmp_path, timeout=0.2)
    collector.delay = 0.5
    rig.stop_after = 1
    assert not rig.deliver(events(1)[0])
    assert 1 == rig.metrics.totals["error.io"]


def test_403_keeps_the_events(collector: LocalCollector, tmp_path: Path):
    """403 is never dropped: the batch is retried until the collector takes it."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(2, 403)
    batch, ids = events(2)
    assert rig.deliver(batch)
    assert ids == collector.uuids()
    assert [] == rig.dead_letters()
    assert 2 == rig.metrics.totals["auth_failure"]


def test_stopping_leaves_the_batch_undelivered(collector: LocalCollector, tmp_path: Path):
    """When the process stops mid-backoff the batch is reported unfinished (it stays spooled)."""
    rig = Rig(collector, tmp_path)
    collector.fail_requests(5, 503)
    rig.stop_after = 1
    assert not rig.deliver(events(1)[0])
    assert [] == collector.events()


def test_422_bisects_and_dead_letters_the_poison(collector: LocalCollector, tmp_path: Path):
    """One poison event in eight: seven delivered in order, one in the dead-letter file."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(8)
    poison = ids[5]
    collector.poison = lambda e: e["uuid"] == poison
    assert rig.deliver(batch)
    assert [i for i in ids if i != poison] == collector.uuids()
    letters = rig.dead_letters()
    assert [(422, "poison event", poison)] == [
        (d["status"], d["reason"], json.loads(d["event"])["uuid"]) for d in letters
    ]
    assert 1 == rig.metrics.totals["dead_letter"]


def test_413_splits_until_it_fits(collector: LocalCollector, tmp_path: Path):
    """A body over the collector's limit is split in halves until each part fits."""
    rig = Rig(collector, tmp_path)
    batch, ids = events(8)
    collector.max_body = len(build_body("2j", batch[:2])) + 1
    assert rig.deliver(batch)
    assert ids == collector.uuids()
    assert all(len(r.events) <= 2 for r in collector.received)
    assert rig.metrics.totals["split"] >= 3
    assert [] == rig.dead_letters()

