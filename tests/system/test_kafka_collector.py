"""The collector's WSGI app with ``sink = kafka``, through WebTest, on a real broker (Tansu).

What a publisher sees: 200 only once Kafka has every event, 422 naming an
event Kafka refuses for itself, 503 with ``Retry-After`` while the broker
does not answer.
"""
from __future__ import annotations

import base64
import email.utils
import gzip
import json
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from baseplate_events import serialize_v2_event
from baseplate_events.collector import make_app
from baseplate_events.collector.service.intake import sign
from demo_app.tansu import TansuBroker, count_keys, read_topics
from event_schemas.event.ttypes import Event
from tests.support.kafka import GunicornCollector
from tests.system.test_collector import v2_event

pytestmark = pytest.mark.system

SECRET = b"a kafka collector test secret..."


@pytest.fixture
def app(kafka_broker: TansuBroker, kafka_topics: Dict[str, str]) -> Iterator[Any]:
    """The collector app over a Kafka sink whose producer refuses events over 1000 bytes."""
    from webtest import TestApp

    settings = {"keys": f"demo={base64.b64encode(SECRET).decode()}", "sink": "kafka",
                "retry_after": "2", "kafka.bootstrap_servers": kafka_broker.bootstrap,
                "kafka.producer.message.max.bytes": "1000",
                **{f"kafka.topic.{stream}": topic for stream, topic in kafka_topics.items()}}
    wsgi = make_app(settings)
    yield TestApp(wsgi)
    wsgi.registry["collector"].sink.close()


def post(app: Any, path: str, body: bytes) -> Any:
    return app.post(path, gzip.compress(body), expect_errors=True, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(time.time(), usegmt=True),
        "X-Signature": f"key=demo, mac={sign(SECRET, body)}"})


def v2j_batch(events: List[Event]) -> bytes:
    return b"[" + b",".join(serialize_v2_event(e) for e in events) + b"]"


def test_a_batch_is_answered_200_once_every_event_is_in_kafka(
    app: Any, kafka_broker: TansuBroker, kafka_topics: Dict[str, str]
) -> None:
    """Each event of the batch is in the v2j topic, keyed by its uuid, its JSON as sent."""
    events = [v2_event() for _ in range(20)]
    response = post(app, "/v2j", v2j_batch(events))
    records = read_topics(kafka_broker.bootstrap, kafka_topics.values())
    assert (200, {"accepted": 20, "duplicates": 0}) == (response.status_int, response.json)
    assert {e.uuid.encode(): serialize_v2_event(e) for e in events} == {
        r.key: r.value for r in records}


def test_an_event_kafka_refuses_for_itself_is_a_422_naming_it(
    app: Any, kafka_broker: TansuBroker, kafka_topics: Dict[str, str]
) -> None:
    """Over message.max.bytes: 422 with the event's index, uuid and reason; never a 503."""
    events = [v2_event(), v2_event(noun="x" * 2000), v2_event()]
    response = post(app, "/v2j", v2j_batch(events))
    stored = count_keys(read_topics(kafka_broker.bootstrap, kafka_topics.values()))
    reason = (f"kafka refused the event for topic {kafka_topics['v2j']}: Unable to produce "
              "message: Broker: Message size too large (MSG_SIZE_TOO_LARGE)")
    assert 422 == response.status_int, response.text
    assert [{"index": 1, "uuid": events[1].uuid, "reason": reason}] == [
        {k: r[k] for k in ("index", "uuid", "reason")} for r in response.json["refused"]]
    assert {events[0].uuid: 1, events[2].uuid: 1} == dict(stored)


def test_a_paused_broker_is_a_503_with_retry_after_and_not_ready(
    app: Any, kafka_broker: TansuBroker
) -> None:
    """SIGSTOPped broker: the batch is 503 + Retry-After, /readyz 503; after SIGCONT, 200."""
    assert 200 == post(app, "/v2j", v2j_batch([v2_event()])).status_int
    batch = v2j_batch([v2_event() for _ in range(3)])
    kafka_broker.pause()
    try:
        paused = post(app, "/v2j", batch)
        readiness = app.get("/readyz", expect_errors=True)
    finally:
        kafka_broker.resume()
    again = post(app, "/v2j", batch)
    assert (503, "2") == (paused.status_int, paused.headers.get("Retry-After")), paused.text
    assert re.fullmatch(r"the sink is unavailable: kafka: [123] of 3 messages to \S+ (not "
                        r"stored, e\.g\. event \S+: Local: Message timed out|had no delivery "
                        r"report after 2\.5 s \(brokers \S+\))", json.loads(paused.text)["error"])
    assert (503, "the sink is unavailable\n") == (readiness.status_int, readiness.text)
    assert 200 == again.status_int, again.text


def test_gunicorn_preload_workers_store_and_stop_at_once(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], tmp_path: Path
) -> None:
    """--preload makes the sink before the fork: the worker gets its own producer, stores,
    and exits on SIGTERM instead of hanging on the parent's producer until killed."""
    keys = tmp_path / "keys.ini"
    keys.write_text(f"[event-publisher:keys]\nkey.name = demo\n"
                    f"key.secret = {base64.b64encode(SECRET).decode()}\n")
    settings = {"publisher_config": str(keys), "sink": "kafka",
                "kafka.bootstrap_servers": kafka_broker.bootstrap,
                **{f"kafka.topic.{stream}": topic for stream, topic in kafka_topics.items()}}
    collector = GunicornCollector(settings, tmp_path / "gunicorn.log", workers=1,
                                  extra_args=["--preload", "--graceful-timeout", "60"])
    try:
        events = [v2_event() for _ in range(5)]
        body = v2j_batch(events)
        response = requests.post(collector.url + "/v2j", gzip.compress(body), timeout=10, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip",
            "Date": email.utils.formatdate(time.time(), usegmt=True),
            "X-Signature": f"key=demo, mac={sign(SECRET, body)}"})
    finally:
        status = collector.stop(timeout=20)
    stored = count_keys(read_topics(kafka_broker.bootstrap, kafka_topics.values()))
    assert 200 == response.status_code, collector.log()
    assert {e.uuid: 1 for e in events} == dict(stored)
    assert 0 == status, collector.log()
