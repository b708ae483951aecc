"""Slow clients and busy sinks do not starve honest ones: the real collector under waitress.

200 idle or byte-a-second sockets: an honest POST is still answered within
1 s. Every batch thread waiting on a locked database: /healthz and /readyz
still answer within 250 ms at p95 over 20 probes.
"""
from __future__ import annotations

import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List

import pytest
import requests

from tests.support.service import CollectorProcess, post_batch, v1_event

if TYPE_CHECKING:
    from demo_app.tansu import TansuBroker

pytestmark = pytest.mark.system

SOCKETS = 200


@contextmanager
def slow_sockets(url: str, count: int, trickle: bool) -> Iterator[List[socket.socket]]:
    """``count`` connections that send nothing (or one byte of a header a second)."""
    host, port = url[len("http://"):].split(":")
    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]
    stop = threading.Event()

    def drip() -> None:
        for sock in sockets:
            sock.sendall(b"POST /v1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while not stop.wait(1.0):
            for sock in sockets:
                try:
                    sock.sendall(b"a")
                except OSError:
                    pass

    dripper = threading.Thread(target=drip, daemon=True)
    if trickle:
        dripper.start()
    try:
        yield sockets
    finally:
        stop.set()
        if trickle:
            dripper.join(5)
        for sock in sockets:
            sock.close()


def honest_post_seconds(url: str) -> float:
    started = time.monotonic()
    response = post_batch(url, [v1_event(1)], timeout=10)
    took = time.monotonic() - started
    assert 200 == response.status_code, response.text
    return took


@pytest.mark.parametrize("trickle", [False, True], ids=["idle", "byte-a-second"])
def test_200_slow_sockets_leave_an_honest_post_answered_within_a_second(
    tmp_path: Path, trickle: bool
):
    """With 200 idle (or trickling) connections held open, honest POSTs take under 1 s."""
    with CollectorProcess("--option", f"sqlite.path={tmp_path / 'events.sqlite3'}") as collector:
        with slow_sockets(collector.url, SOCKETS, trickle):
            time.sleep(2.5 if trickle else 0.5)  # the slow ones are in, and dripping
            took = [honest_post_seconds(collector.url) for _ in range(5)]
        assert 0 == collector.stop()
    print(f"FIGURE waitress {SOCKETS} {'trickling' if trickle else 'idle'} sockets: honest POST "
          f"max {max(took):.3f} s")
    assert max(took) < 1.0, took


def test_the_connection_limit_and_idle_timeout_are_settable(tmp_path: Path):
    """--connection-limit 20 --channel-timeout 1: an idle connection is closed after ~1 s."""
    with CollectorProcess("--option", f"sqlite.path={tmp_path / 'events.sqlite3'}",
                          "--connection-limit", "20", "--channel-timeout", "1") as collector:
        with slow_sockets(collector.url, 1, trickle=False) as (sock,):
            sock.settimeout(10)
            started = time.monotonic()
            assert b"" == sock.recv(1)  # closed by the collector
            closed_after = time.monotonic() - started
        assert 0 == collector.stop()
    assert 0.9 < closed_after < 5, closed_after


def test_past_the_connection_limit_a_post_waits_for_the_idle_timeout(tmp_path: Path):
    """--connection-limit 5 --channel-timeout 2: five idle sockets hold the 6th connection
    until waitress closes them as idle."""
    with CollectorProcess("--option", f"sqlite.path={tmp_path / 'events.sqlite3'}",
                          "--connection-limit", "5", "--channel-timeout", "2") as collector:
        with slow_sockets(collector.url, 5, trickle=False):
            time.sleep(0.3)
            took = honest_post_seconds(collector.url)
        assert 0 == collector.stop()
    assert 1.5 < took < 6, took


def test_health_answers_within_250_ms_while_every_batch_thread_waits_for_the_sink(
    tmp_path: Path
):
    """A database locked by another process holds all 8 batch threads; probes still answer fast."""
    db = tmp_path / "events.sqlite3"
    with CollectorProcess("--option", f"sqlite.path={db}") as collector:
        assert 200 == post_batch(collector.url, [v1_event(0)]).status_code
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            p95, answers = probe_while_busy(collector.url)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert 0 == collector.stop()
    print(f"FIGURE waitress busy sink: p95 /healthz {p95['/healthz']:.3f} s, "
          f"/readyz {p95['/readyz']:.3f} s; batches answered {sorted(set(answers))}")
    assert 503 in answers  # the batch threads were busy with a sink that could not take them
    assert p95["/healthz"] < 0.25 and p95["/readyz"] < 0.25, p95


def test_health_answers_within_250_ms_while_the_kafka_broker_is_paused(
    kafka_broker: "TansuBroker", kafka_topics: Dict[str, str]
):
    """12 clients posting to a paused broker hold every batch thread; probes answer fast,
    and /readyz is 200 again after the broker resumes, with no batch sent."""
    topics = [f"kafka.topic.{stream}={topic}" for stream, topic in kafka_topics.items()]
    options = [item for option in [f"kafka.bootstrap_servers={kafka_broker.bootstrap}", *topics]
               for item in ("--option", option)]
    with CollectorProcess("--sink", "kafka", *options) as collector:
        assert 200 == post_batch(collector.url, [v1_event(0)]).status_code
        kafka_broker.pause()
        try:
            p95, answers = probe_while_busy(collector.url)
            unready = requests.get(collector.url + "/readyz", timeout=5).status_code
        finally:
            kafka_broker.resume()
        started = time.monotonic()
        while requests.get(collector.url + "/readyz", timeout=5).status_code != 200:
            assert time.monotonic() - started < 15, "never ready again"
            time.sleep(0.1)
        again = time.monotonic() - started
        assert 0 == collector.stop()
    print(f"FIGURE waitress, Kafka broker paused: p95 /healthz {p95['/healthz']:.3f} s, "
          f"/readyz {p95['/readyz']:.3f} s; batches answered {sorted(set(answers))}; ready "
          f"{again:.2f} s after the broker resumed")
    assert 503 in answers and 503 == unready
    assert p95["/healthz"] < 0.25 and p95["/readyz"] < 0.25, p95


def probe_while_busy(url: str) -> "tuple[Dict[str, float], List[int]]":
    """12 clients post batch after batch while 20 probes of each health path are timed:
    the p95 of each, and the statuses the batches got."""
    stop = threading.Event()
    answers: List[int] = []

    def publisher() -> None:  # one of 12, each a batch at a time, as publishers send
        while not stop.is_set():
            try:
                answers.append(post_batch(url, [v1_event(1)], timeout=20).status_code)
            except requests.RequestException:
                answers.append(0)

    publishers = [threading.Thread(target=publisher, daemon=True) for _ in range(12)]
    for thread in publishers:
        thread.start()
    time.sleep(1.0)  # every batch thread is now waiting for the sink
    timings: Dict[str, List[float]] = {"/healthz": [], "/readyz": []}
    try:
        for _ in range(20):
            for path, taken in timings.items():
                started = time.monotonic()
                requests.get(url + path, timeout=10)
                taken.append(time.monotonic() - started)
            time.sleep(0.15)  # 20 probes over 4 s: past the sink's 2.5 s wait
    finally:
        stop.set()
        for thread in publishers:
            thread.join(30)
    return {path: sorted(taken)[18] for path, taken in timings.items()}, answers  # 19th of 20
