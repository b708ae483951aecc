"""The publisher as a real subprocess: real queue, real collector, real signals."""
from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Callable, List, Tuple

import pytest

from baseplate_events import Event, EventQueue, serialize_v1_event, serialize_v2_event
from baseplate_events.mqueue.posix import MessageQueue
from event_schemas.event.ttypes import Event as V2Event
from publisher.send.batches import build_body

from tests.support.collector import LocalCollector
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


def v2_event(number: int) -> V2Event:
    return V2Event(
        source="test",
        action="publish",
        noun="event",
        client_timestamp=1_700_000_000_000 + number,
        uuid=str(uuid.uuid4()),
    )


def assert_batches_are_slices(version: str, collector: LocalCollector, events: List[bytes]) -> None:
    """Every body received is exactly the batch of the next consecutive events."""
    position = 0
    for received in collector.received:
        count = len(received.events)
        assert build_body(version, events[position : position + count]) == received.body
        position += count
    assert len(events) == position


@pytest.mark.parametrize("version", ["1", "2", "2j"])
def test_events_from_event_queue_reach_the_collector(
    version: str, queue_name: str, start_publisher: Callable[..., PublisherProcess]
):
    """Events put with EventQueue arrive signed, gzipped and byte-exact, for each version."""
    with LocalCollector(SECRET, version=version) as collector:
        publisher = start_publisher(collector, **{"collector.version": version})
        serializer = serialize_v2_event if version == "2" else serialize_v1_event
        queue = EventQueue(
            queue_name,
            serializer,
            max_messages=QUEUE_MESSAGES,
            max_message_size=QUEUE_MESSAGE_SIZE,
            put_timeout=2.0,
        )
        try:
            if version == "2":
                objects = [v2_event(i) for i in range(25)]
            else:
                objects = [Event("topic", "type") for _ in range(25)]
            expected = [serializer(o) for o in objects]
            for o in objects:
                queue.put(o)
            collector.wait_for_events(25)
        finally:
            queue.close()
        assert 0 == publisher.stop()
        assert [] == collector.problems
        assert_batches_are_slices(version, collector, expected)


def test_startup_line_names_queue_collector_version_and_metrics(
    queue_name: str, start_publisher: Callable[..., PublisherProcess]
):
    """Start-up logs one line with the queue and its capacity, the URL, version and metrics."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.endpoint": "127.0.0.1:8125",
                                                  "metrics.namespace": "events.pub"})
        assert 0 == publisher.stop()
    [line] = [x for x in publisher.log().splitlines() if " starting: " in x]
    expected = (
        f"starting: queue /events-{queue_name} (created, mode 0600, 10 messages x 2048 bytes, "
        f"0 waiting); collector http://{collector.hostname}/v2j (version 2j, key TestKey); "
        "metrics to statsd 127.0.0.1:8125 as events.pub.*"
    )
    assert line.endswith(expected)


def _metrics_part(publisher: PublisherProcess) -> str:
    [line] = [x for x in publisher.log().splitlines() if " starting: " in x]
    return line.split("key TestKey); ", 1)[1]


def test_startup_line_says_metrics_off_once_without_statsd_or_prometheus(
    start_publisher: Callable[..., PublisherProcess]
):
    """With neither metrics.endpoint nor metrics.prometheus, the line says metrics are off."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector)
        assert 0 == publisher.stop()
    assert "metrics off (neither metrics.endpoint nor metrics.prometheus is in use)" == (
        _metrics_part(publisher))


def test_startup_line_with_prometheus_only_does_not_say_metrics_off(
    start_publisher: Callable[..., PublisherProcess]
):
    """With only metrics.prometheus, the line names /metrics and nothing about statsd."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0"})
        assert 0 == publisher.stop()
    assert re.fullmatch(r"metrics served for Prometheus on http://127\.0\.0\.1:\d+/metrics",
                        _metrics_part(publisher)), publisher.log()


def test_startup_line_names_statsd_and_prometheus_together(
    start_publisher: Callable[..., PublisherProcess]
):
    """With both, one phrase names statsd and /metrics."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0",
                                                  "metrics.endpoint": "127.0.0.1:8125"})
        assert 0 == publisher.stop()
    assert re.fullmatch(r"metrics to statsd 127\.0\.0\.1:8125 and served for Prometheus on "
                        r"http://127\.0\.0\.1:\d+/metrics", _metrics_part(publisher)), (
        publisher.log())


def test_queue_created_with_mode_0600(
    queue_name: str, start_publisher: Callable[..., PublisherProcess]
):
    """A queue the publisher creates is readable by its owner only."""
    import posix_ipc

    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector)
        raw = posix_ipc.MessageQueue("/events-" + queue_name)
        try:
            import os

            mode = os.stat(f"/proc/self/fd/{raw.mqd}").st_mode & 0o777
        finally:
            raw.close()
        assert 0 == publisher.stop()
    assert 0o600 == mode


def test_503_spell_and_422_lose_nothing_else(
    start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """A 3-second 503 spell and a poison event: the publisher keeps running; the rest arrive."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector)
        events = [make_event(i) for i in range(60)]
        ids = uuids_of(events)
        poison = ids[40]
        collector.poison = lambda e: e.get("uuid") == poison
        collector.fail_for(3.0)
        put_all(publisher_queue, events)
        collector.wait_for_events(59, timeout=15)
        assert publisher.process is not None and publisher.process.poll() is None
        assert 0 == publisher.stop()
    assert [i for i in ids if i != poison] == collector.uuids()
    assert [] == collector.problems
    assert 503 in collector.answers and 422 in collector.answers


def test_sigterm_mid_stream_loses_nothing(
    start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """SIGTERM while events are in flight: everything taken off the queue is sent; exit 0."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"batch.max_bytes": "600"})
        collector.delay = 0.05
        events = [make_event(i) for i in range(80)]
        put_all(publisher_queue, events)
        publisher.signal(signal.SIGTERM)
        assert 0 == publisher.wait()
        left = publisher_queue.get_many(QUEUE_MESSAGES)
        delivered = collector.uuids()
    assert uuids_of(events) == delivered + uuids_of(left)
    assert "shutdown: sent " in publisher.log()


def test_second_signal_exits_at_once(
    start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """With the collector down, a second SIGTERM ends the flush at once with status 143."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(60)
        publisher = start_publisher(collector, **{"shutdown.deadline": "30"})
        put_all(publisher_queue, [make_event(1)])
        collector.wait_for_requests(1)
        publisher.signal(signal.SIGTERM)
        publisher.wait_for_log("flushing")
        started = time.monotonic()
        publisher.signal(signal.SIGTERM)
        assert 143 == publisher.wait()
        assert time.monotonic() - started < 2
    assert "second signal (SIGTERM): exiting now" in publisher.log()


def test_health_file(
    start_publisher: Callable[..., PublisherProcess], tmp_path: Path,
    publisher_queue: MessageQueue,
):
    """The health file shows depth, spool backlog and the last successful send."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector)
        put_all(publisher_queue, [make_event(1)])
        collector.wait_for_events(1)
        time.sleep(0.5)
        doc = json.loads((tmp_path / "spool" / "health.json").read_text())
        assert 0 == publisher.stop()
    assert (0, 0) == (doc["queue_depth"], doc["spool_events"])
    assert doc["last_success"] is not None
    assert 1 == doc["counters"]["sent"]


def test_secret_never_logged(
    start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """Even with --debug-level detail and a 403 the key's secret never reaches the log."""
    import base64

    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_requests(1, 403)
        publisher = start_publisher(collector)
        put_all(publisher_queue, [make_event(1)])
        collector.wait_for_events(1)
        assert 0 == publisher.stop()
    log = publisher.log()
    assert "REFUSED OUR CREDENTIALS" in log
    assert SECRET.decode() not in log and base64.b64encode(SECRET).decode() not in log


def test_statsd_metrics(
    start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """sent, error.http, the post timer and the queue-depth gauge reach a real statsd socket."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd_socket:
        statsd_socket.bind(("127.0.0.1", 0))
        statsd_socket.settimeout(0.2)
        port = statsd_socket.getsockname()[1]
        with LocalCollector(SECRET, version="2j") as collector:
            collector.fail_requests(1, 503)
            publisher = start_publisher(collector, **{
                "metrics.endpoint": f"127.0.0.1:{port}", "metrics.namespace": "ev"})
            put_all(publisher_queue, [make_event(1), make_event(2)])
            collector.wait_for_events(2)
            time.sleep(1.1)
            assert 0 == publisher.stop()
        packets = []
        try:
            while True:
                packets.extend(statsd_socket.recv(4096).decode().splitlines())
        except socket.timeout:
            pass
    names = {p.split(":")[0] for p in packets}
    assert {"ev.sent", "ev.error.http", "ev.post", "ev.queue.depth", "ev.retry"} <= names
    assert "ev.sent:2|c" in packets


def test_health_line_and_debug_batches(
    queue_name: str, publisher_for: Callable[..., PublisherProcess], publisher_queue: MessageQueue
):
    """--debug logs each batch sent; health.log_interval logs the health line."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = publisher_for(collector.hostname, debug=True, **{
            "health.log_interval": "0.1", "health.interval": "0.1"}).start()
        put_all(publisher_queue, [make_event(1), make_event(2)])
        collector.wait_for_events(2)
        log = publisher.wait_for_log("sent=2 ")
        assert 0 == publisher.stop()
    assert "DEBUG sent a batch of " in log
    assert f"health: queue /events-{queue_name} depth=0 spool=0 events/0 bytes" in log


def test_health_line_shows_drained_and_held(
    publisher_for: Callable[..., PublisherProcess], publisher_queue: MessageQueue
):
    """The health line counts drained, sent and held events, drained never behind sent."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = publisher_for(collector.hostname, **{
            "health.log_interval": "0.1", "health.interval": "0.1"}).start()
        put_all(publisher_queue, [make_event(1), make_event(2)])
        collector.wait_for_events(2)
        log = publisher.wait_for_log(" sent=2 ")
        assert 0 == publisher.stop()
    lines = [x for x in log.splitlines() if " health: " in x]
    assert any(" drained=2 sent=2 held=0 dead_letter=0 dropped=0" in x for x in lines), log
    pairs = [tuple(int(n) for n in re.search(r" drained=(\d+) sent=(\d+) ", x).groups())
             for x in lines]
    assert [] == [(drained, sent) for drained, sent in pairs if drained < sent]


def _nice_of_threads(pid: int) -> Tuple[int, List[int]]:
    """The nice value of the main thread and of every other thread, from /proc."""
    main, others = 0, []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            nice = int(f.read().rsplit(")", 1)[1].split()[16])
        if tid == str(pid):
            main = nice
        else:
            others.append(nice)
    return main, others


@pytest.mark.parametrize("nice", [0, 10])
def test_sender_thread_is_nicer_than_the_drain_loop(
    nice: int, start_publisher: Callable[..., PublisherProcess]
):
    """sender.nice lowers only the sender thread's priority; the drain loop keeps its own."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    expected = (base, [min(19, base + nice)])
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"sender.nice": str(nice)})
        assert publisher.process is not None
        deadline = time.monotonic() + 5
        while (found := _nice_of_threads(publisher.process.pid)) != expected:
            assert time.monotonic() < deadline, found
            time.sleep(0.02)
        assert 0 == publisher.stop()


def test_the_health_file_never_shows_drained_behind_sent_mid_burst(
    tmp_path: Path, publisher_for: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """Through a 300-event burst, every health file read has drained >= sent."""
    import threading

    health = tmp_path / "spool" / "health.json"
    snapshots: List[Tuple[int, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                counters = json.loads(health.read_text())["counters"]
            except (OSError, ValueError):
                continue
            snapshots.append((counters["drained"], counters["sent"]))
            time.sleep(0.005)

    with LocalCollector(SECRET, version="2j") as collector:
        collector.delay = 0.03  # batches of about 15 events go out over a second or so
        publisher = publisher_for(collector.hostname, **{
            "health.interval": "0.01", "batch.max_bytes": "2000"}).start()
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            put_all(publisher_queue, [make_event(i) for i in range(300)])
            collector.wait_for_events(300, timeout=30)
            deadline = time.monotonic() + 10
            while (not snapshots or snapshots[-1][1] < 300) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            done.set()
            watcher.join(10)
        assert 0 == publisher.stop()
    assert (300, 300) == snapshots[-1]
    assert len({sent for _, sent in snapshots}) > 2, (len(snapshots), sorted(set(snapshots)))
    assert [] == [(drained, sent) for drained, sent in snapshots if drained < sent]
