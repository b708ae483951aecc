"""The whole chain onto Kafka: apps → queues → publishers → two collector workers → Kafka.

Real parts throughout: the Pyramid and Flask apps through WebTest and Flask's
test client put events on real POSIX queues (10 x 8192, unlinked on
teardown); two ``python -m publisher`` subprocesses (v2 and legacy v1) send
them to the collector under gunicorn with two workers, each with its own
idempotent producer; a Tansu broker (in memory) takes them; a consumer reads
the topics back by ``assign`` and counts each uuid. Delivery is at least once:
every uuid put must be there, duplicates are counted and allowed.
"""
from __future__ import annotations

import base64
import os
import secrets
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from baseplate_events.mqueue.posix import MessageQueue
from demo_app.tansu import TansuBroker, count_keys, read_topics
from tests.conftest import TEST_MAX_MESSAGE_SIZE, TEST_MAX_MESSAGES, unique_queue_name
from tests.support.kafka import GunicornCollector
from tests.support.publisher import PublisherProcess
from tests.system.test_e2e import send

pytestmark = pytest.mark.system

KEY = "chain"


class Traffic(threading.Thread):
    """Requests to both apps at a steady pace until stopped; the uuids they put."""

    def __init__(self, queue_name: str, v1_queue: str, per_second: float) -> None:
        super().__init__(name="traffic", daemon=True)
        from webtest import TestApp

        from demo_app import flask_app, pyramid_app

        sizes: Dict[str, Any] = dict(max_messages=TEST_MAX_MESSAGES,
                                     max_message_size=TEST_MAX_MESSAGE_SIZE, put_timeout=5)
        self.shop_app = pyramid_app.make_app(queue_name, **sizes)
        self.forum_app = flask_app.make_app(queue_name, v1_queue, **sizes)
        self.shop, self.forum = TestApp(self.shop_app), self.forum_app.test_client()
        self.interval = 1 / per_second
        self.put: List[str] = []
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        from demo_app.traffic import plan

        calls = plan(100_000)
        try:
            for call in calls:
                if self.halt.wait(self.interval):
                    return
                self.put.extend(send(call, self.shop, self.forum))
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> List[str]:
        self.halt.set()
        self.join(30)
        from demo_app import flask_app

        self.shop_app.registry["baseplate_events"].close()
        self.forum_app.extensions["baseplate_events"].runtime.close()
        flask_app.close_legacy_queue(self.forum_app)
        if self.error is not None:
            raise AssertionError(f"traffic failed: {self.error!r}")
        return self.put


class Chain:
    """Queues, publishers and the gunicorn collector of one test, on the session's broker."""

    def __init__(self, broker: TansuBroker, topics: Dict[str, str], queues: List[str],
                 tmp_path: Path) -> None:
        from demo_app.pipeline import publisher_config

        self.broker = broker
        self.topics = topics
        self.queue_name, self.v1_queue = queues
        secret = secrets.token_bytes(32)
        keys = tmp_path / "keys.ini"
        keys.write_text(f"[event-publisher:keys]\nkey.name = {KEY}\n"
                        f"key.secret = {base64.b64encode(secret).decode()}\n")
        settings = {"publisher_config": str(keys), "sink": "kafka", "retry_after": "1",
                    "kafka.bootstrap_servers": broker.bootstrap,
                    **{f"kafka.topic.{stream}": topic for stream, topic in topics.items()}}
        self.collector = GunicornCollector(settings, tmp_path / "gunicorn.log", workers=2)
        config = tmp_path / "publisher.ini"
        config.write_text(publisher_config(
            [(self.queue_name, "2"), (self.v1_queue, "1")], self.collector.url, KEY, secret,
            TEST_MAX_MESSAGES, TEST_MAX_MESSAGE_SIZE, tmp_path, batch_wait=0.1))
        self.publishers = [
            PublisherProcess(queue, config, tmp_path / f"publisher-{queue}.log").start()
            for queue in (self.queue_name, self.v1_queue)]

    def start_traffic(self) -> Traffic:
        """Requests to both apps, 25 a second, already flowing for 1.5 s on return."""
        traffic = Traffic(self.queue_name, self.v1_queue, per_second=25)
        traffic.start()
        time.sleep(1.5)
        return traffic

    def stop_traffic(self, traffic: Traffic) -> Tuple[List[str], "Counter[str]"]:
        """Stop ``traffic``: the uuids it put, and the count of each uuid found in Kafka."""
        put = traffic.stop()
        counts = self.wait_for_kafka(put)
        print(summary(put, counts))
        return put, counts

    def logs(self) -> str:
        return "\n".join([self.collector.log()] + [p.log() for p in self.publishers])

    def wait_for_kafka(self, uuids: List[str], timeout: float = 30.0) -> "Counter[str]":
        """The count of each uuid in the topics, once all of ``uuids`` are there (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = count_keys(read_topics(self.broker.bootstrap, self.topics.values(),
                                            idle=0.3))
            if set(uuids) <= counts.keys() or time.monotonic() > deadline:
                return counts
            time.sleep(0.5)

    def close(self) -> List[int]:
        """Stop the publishers (they flush), then the collector; their exit statuses."""
        statuses = [p.stop(20) for p in self.publishers]
        for publisher in self.publishers:
            publisher.kill()
        statuses.append(self.collector.stop())
        return statuses


@pytest.fixture
def chain(kafka_broker: TansuBroker, kafka_topics: Dict[str, str],
          tmp_path: Path) -> Iterator[Chain]:
    from demo_app.pipeline import open_queue

    names = [unique_queue_name("k2"), unique_queue_name("k1")]
    opened: List[MessageQueue] = []
    made: List[Chain] = []
    try:
        for name in names:
            opened.append(open_queue(name, TEST_MAX_MESSAGES, TEST_MAX_MESSAGE_SIZE))
        made.append(Chain(kafka_broker, kafka_topics, names, tmp_path))
        yield made[0]
    finally:
        kafka_broker.resume()
        for each in made:
            each.close()
        for queue in opened:
            queue.close()
            queue.unlink()


def summary(put: List[str], counts: "Counter[str]") -> str:
    duplicates = sum(n - 1 for u, n in counts.items() if u in set(put))
    return f"{len(put)} put, {len(set(put) & counts.keys())} in Kafka, {duplicates} duplicates"


def test_a_broker_paused_for_10_s_mid_stream_costs_503s_and_loses_nothing(chain: Chain) -> None:
    """SIGSTOP the broker 10 s mid-stream: the collector answers 503, then every event lands."""
    traffic = chain.start_traffic()
    chain.broker.pause()
    try:
        time.sleep(10)
    finally:
        chain.broker.resume()
    time.sleep(1.5)
    put, counts = chain.stop_traffic(traffic)
    logs = chain.logs()
    assert [] == sorted(set(put) - counts.keys()), logs
    assert set() == counts.keys() - set(put), "events in Kafka that no app put"
    assert "collector answered 503 (" in logs, logs
    assert [0, 0, 0] == chain.close(), chain.logs()


def test_a_collector_worker_killed_mid_batch_loses_nothing(chain: Chain) -> None:
    """SIGKILL the worker holding a batch (its broker stalled): the publisher resends it."""
    traffic = chain.start_traffic()
    # Stall the broker so that a batch is certainly in a worker's hands, waiting
    # for its delivery reports, when that worker dies.
    chain.broker.pause()
    try:
        deadline = time.monotonic() + 2.0
        serving = chain.collector.serving_workers()
        while not serving and time.monotonic() < deadline:
            time.sleep(0.02)
            serving = chain.collector.serving_workers()
        assert serving, f"no worker was handling a batch:\n{chain.logs()}"
        os.kill(serving[0], signal.SIGKILL)
    finally:
        chain.broker.resume()
    chain.collector.wait_for(r"Booting worker with pid: (\d+)", count=3)
    time.sleep(2)
    put, counts = chain.stop_traffic(traffic)
    logs = chain.logs()
    assert [] == sorted(set(put) - counts.keys()), logs
    assert set() == counts.keys() - set(put), "events in Kafka that no app put"
    assert f"Worker (pid:{serving[0]}) was sent SIGKILL!" in chain.collector.log()
    assert [0, 0, 0] == chain.close(), chain.logs()
