"""SinkHealth: after a failed batch, /readyz is False and probes the sink at most every 2 s
(real SQLite sinks; only the clock is fake)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List

from baseplate_events.collector.service.metrics import CollectorMetrics
from baseplate_events.collector.service.handler import SinkHealth
from baseplate_events.collector.sinks.sqlite import SQLiteSink


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settle(health: SinkHealth) -> None:
    """Wait for a started probe's thread to finish."""
    deadline = time.monotonic() + 10
    while health.probing:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_failing_sink_is_probed_at_most_every_two_seconds(tmp_path: Path):
    """Polled every 0.1 s for 5 s while the sink stays closed: 2 probes, never ready."""
    sink = SQLiteSink(str(tmp_path / "events.sqlite3"))
    sink.close()  # every probe now fails: "the sink is closed"
    clock = Clock()
    health = SinkHealth(lambda: sink, CollectorMetrics(), monotonic=clock)
    health.failed("sqlite: disk full")
    answers: List[bool] = []
    for _ in range(50):
        answers.append(health.ready())
        settle(health)
        clock.now += 0.1
    assert (set(answers), health.probes) == ({False}, 2)
    assert "sqlite: the sink is closed" == health.problem


def test_a_probe_that_succeeds_makes_the_sink_ready_without_a_batch(tmp_path: Path):
    """The sink works again: the first probe, 2 s after the failure, makes ready() True."""
    sink = SQLiteSink(str(tmp_path / "events.sqlite3"))
    clock = Clock()
    metrics = CollectorMetrics()
    health = SinkHealth(lambda: sink, metrics, monotonic=clock)
    health.failed("sqlite: database is locked")
    first = health.ready()
    clock.now += 2.0
    probing = health.ready()
    settle(health)
    try:
        assert (False, False, True, 1) == (first, probing, health.ready(), health.probes)
        assert 1.0 == metrics.registry.get_sample_value("baseplate_events_collector_sink_ready")
    finally:
        sink.close()


def test_a_batch_that_succeeds_ends_the_failure_at_once(tmp_path: Path):
    """succeeded() after failed(): ready again with no probe at all."""
    sink = SQLiteSink(str(tmp_path / "events.sqlite3"))
    health = SinkHealth(lambda: sink, CollectorMetrics(), monotonic=Clock())
    health.failed("sqlite: database is locked")
    health.succeeded()
    try:
        assert (True, 0) == (health.ready(), health.probes)
    finally:
        sink.close()
