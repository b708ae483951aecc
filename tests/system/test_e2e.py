"""End to end: both apps put events on real queues, the publisher daemon sends them, the
reference collector stores them, and every event arrives exactly once.

Real parts throughout: the Pyramid and Flask apps through their frameworks
(WebTest, Flask's test client), real POSIX queues (10 x 8192, unlinked on
teardown), ``python -m publisher`` as subprocesses, and the collector serving
HTTP on port 0.
"""
from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from baseplate_events.mqueue.posix import MessageQueue
from demo_app.collector import DemoCollector, make_server
from demo_app.traffic import PlannedRequest, plan
from event_schemas.event.ttypes import Event as SampleEvent
from tests.conftest import TEST_MAX_MESSAGE_SIZE, TEST_MAX_MESSAGES, unique_queue_name
from tests.support.processes import reap

pytestmark = pytest.mark.system

REPO = str(Path(__file__).resolve().parent.parent.parent)
KEY = "e2e"
# the sample schema: the collector checks events against it and names their fields
SCHEMA = f"{SampleEvent.__module__}:{SampleEvent.__name__}"


def start_publisher(queue: str, config: Path, tmp_path: Path) -> subprocess.Popen:
    log = open(tmp_path / f"publisher-{queue}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "publisher", "--queue-name", queue, str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )


def send(call: PlannedRequest, shop: Any, forum: Any) -> List[str]:
    """Make one planned request in-process; return the uuids of the events it put."""
    headers = {"X-User-Id": call.user} if call.user else {}
    if call.app == "pyramid":
        if call.method == "GET":
            return [e["uuid"] for e in shop.get(call.path, headers=headers).json["events"]]
        return [e["uuid"] for e in shop.post_json(call.path, call.body, headers=headers)
                .json["events"]]
    response = forum.open(call.path, method=call.method, json=call.body, headers=headers)
    assert response.status_code < 300, response.get_data(as_text=True)
    return [e["uuid"] for e in response.get_json()["events"]]


def wait_for(collector: DemoCollector, uuids: List[str], timeout: float = 20.0) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stored = {e["uuid"]: e for e in collector.store.events()}
        if set(uuids) <= stored.keys() or time.monotonic() > deadline:
            return stored
        time.sleep(0.05)


@pytest.fixture
def queues(queue_name: str) -> Iterator[List[str]]:
    """The v2 and v1 queues, created here (retrying while another run of this user holds
    the ulimit -q budget), closed and unlinked on teardown."""
    from demo_app.pipeline import open_queue

    names = [queue_name, unique_queue_name("v1")]
    opened: List[MessageQueue] = []
    try:
        for name in names:
            opened.append(open_queue(name, TEST_MAX_MESSAGES, TEST_MAX_MESSAGE_SIZE))
        yield names
    finally:
        for queue in opened:
            queue.close()
            queue.unlink()


@pytest.mark.parametrize("v2_version", ["2", "2j"])
def test_every_event_put_by_both_apps_reaches_the_collector_exactly_once(
    v2_version: str, queues: List[str], tmp_path: Path
) -> None:
    """60 requests to both apps (v2 events and legacy v1) arrive once each, then SIGTERM exits 0."""
    from webtest import TestApp

    from demo_app import flask_app, pyramid_app
    from demo_app.pipeline import publisher_config

    queue_name, v1_queue = queues
    secret = secrets.token_bytes(32)
    sizes: Dict[str, Any] = dict(max_messages=TEST_MAX_MESSAGES,
                                 max_message_size=TEST_MAX_MESSAGE_SIZE, put_timeout=5)
    shop_app = pyramid_app.make_app(queue_name, **sizes)
    forum_app = flask_app.make_app(queue_name, v1_queue, **sizes)
    publishers: List[subprocess.Popen] = []
    with make_server(keys={KEY: secret}, schema=SCHEMA) as collector:
        config = tmp_path / "publisher.ini"
        config.write_text(publisher_config(
            [(queue_name, v2_version), (v1_queue, "1")], collector.url, KEY, secret,
            TEST_MAX_MESSAGES, TEST_MAX_MESSAGE_SIZE, tmp_path, batch_wait=0.1))
        try:
            publishers = [start_publisher(q, config, tmp_path) for q in (queue_name, v1_queue)]
            shop, forum = TestApp(shop_app), forum_app.test_client()
            put = [u for call in plan(60) for u in send(call, shop, forum)]
            stored = wait_for(collector, put)
            for publisher in publishers:
                publisher.send_signal(signal.SIGTERM)
            statuses = [publisher.wait(timeout=20) for publisher in publishers]
        finally:
            reap(*publishers)
            shop_app.registry["baseplate_events"].close()
            forum_app.extensions["baseplate_events"].runtime.close()
            flask_app.close_legacy_queue(forum_app)
        logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("publisher-*.log"))
        assert 60 == len(put)
        assert sorted(put) == sorted(stored), logs
        assert {1} == {stored[u]["receipts"] for u in put}, "an event arrived more than once"
        assert [0, 0] == statuses, logs
        versions = sorted({stored[u]["version"] for u in put})
        assert sorted(["1", v2_version]) == versions


def test_a_poison_event_is_dead_lettered_and_the_rest_delivered_once(
    queues: List[str], tmp_path: Path
) -> None:
    """The collector's 422 names the event without a uuid; the publisher delivers the others."""
    import json

    from baseplate_events import EventQueue, serialize_v2_event
    from demo_app.pipeline import publisher_config
    from event_schemas.event.ttypes import Event

    queue_name = queues[0]
    secret = secrets.token_bytes(32)

    def event(**fields: Any) -> Event:
        return Event(source="e2e", action="poison-test", noun="event",
                     client_timestamp=int(time.time() * 1000), **fields)

    good = [str(uuid.uuid4()) for _ in range(6)]
    with make_server(keys={KEY: secret}, schema=SCHEMA) as collector:
        config = tmp_path / "publisher.ini"
        config.write_text(publisher_config(
            [(queue_name, "2")], collector.url, KEY, secret,
            TEST_MAX_MESSAGES, TEST_MAX_MESSAGE_SIZE, tmp_path, batch_wait=0.5))
        publisher = start_publisher(queue_name, config, tmp_path)
        try:
            with EventQueue(queue_name, serialize_v2_event, max_messages=TEST_MAX_MESSAGES,
                            max_message_size=TEST_MAX_MESSAGE_SIZE, put_timeout=5) as queue:
                for n, event_uuid in enumerate(good):
                    queue.put(event(uuid=event_uuid))
                    if n == 2:
                        queue.put(event())  # no uuid: the collector refuses it
            stored = wait_for(collector, good)
            publisher.send_signal(signal.SIGTERM)
            status = publisher.wait(timeout=20)
        finally:
            reap(publisher)
        logs = (tmp_path / f"publisher-{queue_name}.log").read_text(errors="replace")
        assert sorted(good) == sorted(stored), logs
        assert {1} == {stored[u]["receipts"] for u in good}, logs
        assert 0 == status, logs
    dead = [json.loads(line) for line in
            (tmp_path / f"spool-{queue_name}" / "dead-letter.jsonl").read_text().splitlines()]
    assert [422] == [d["status"] for d in dead], logs
    assert "uuid: missing or not a string" in dead[0]["reason"]
    assert '"5"' not in dead[0]["event"]
