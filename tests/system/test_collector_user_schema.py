"""A user's own schema through the whole pipeline to the real collector.

The user's ``shop.thrift`` (``tests/thrift/shop.thrift``, generated into
``tests/thrift_gen/shop``) numbers its fields unlike the sample schema:
``1 source, 2 client_timestamp, 3 uuid, 4 action, 5 noun, 6 cart``, the cart
a nested struct with a list of structs, a map and a set. The events are put
with the real ``EventQueue`` and ``serialize_v2_event``, sent by the real
publisher (a subprocess), and read back from the collector's ``/api/events``:
by field id without a schema, by name with ``--schema``.
"""
from __future__ import annotations

import base64
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from baseplate_events import EventQueue, serialize_v2_event
from demo_app.collector import make_server
from demo_app.pipeline import publisher_config
from tests.conftest import TEST_MAX_MESSAGE_SIZE, TEST_MAX_MESSAGES
from tests.thrift_gen.shop.ttypes import Cart, Item, ShopEvent
from tests.support.processes import reap, serving_collector

pytestmark = pytest.mark.system

REPO = str(Path(__file__).resolve().parent.parent.parent)
KEY = "shop"
SECRET = secrets.token_bytes(32)
SCHEMA = f"{ShopEvent.__module__}:{ShopEvent.__name__}"


def shop_event(**fields: Any) -> ShopEvent:
    values: Dict[str, Any] = dict(
        source="shop-web", client_timestamp=int(time.time() * 1000), uuid=str(uuid.uuid4()),
        action="checkout", noun="cart",
        cart=Cart(cart_id="c-1", items=[Item(sku="SKU-9", quantity=2, price=9.5)],
                  coupons={"WELCOME": 5}, labels={"gift"}, gift=True))
    values.update(fields)
    return ShopEvent(**values)


def put_and_publish(queue_name: str, collector_url: str, events: List[ShopEvent],
                    tmp_path: Path) -> str:
    """Put ``events`` on a real queue and run the real publisher until SIGTERM; its log."""
    config = tmp_path / "publisher.ini"
    config.write_text(publisher_config(
        [(queue_name, "2")], collector_url, KEY, SECRET, TEST_MAX_MESSAGES,
        TEST_MAX_MESSAGE_SIZE, tmp_path, batch_wait=0.1))
    log_path = tmp_path / "publisher.log"
    with EventQueue(queue_name, serialize_v2_event, max_messages=TEST_MAX_MESSAGES,
                    max_message_size=TEST_MAX_MESSAGE_SIZE, put_timeout=5) as queue:
        with open(log_path, "wb") as log:
            publisher = subprocess.Popen(
                [sys.executable, "-m", "publisher", "--queue-name", queue_name, str(config)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            try:
                for event in events:
                    queue.put(event)
                wait_for_events(collector_url, [e.uuid for e in events])
                publisher.send_signal(signal.SIGTERM)
                assert 0 == publisher.wait(timeout=20), log_path.read_text()
            finally:
                reap(publisher)
    return log_path.read_text(errors="replace")


def wait_for_events(url: str, uuids: List[str], timeout: float = 20.0) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        document = requests.get(url + "/api/events", timeout=10).json()
        stored = {e["uuid"]: e for e in document["events"]}
        if set(uuids) <= stored.keys() or time.monotonic() > deadline:
            return stored
        time.sleep(0.05)


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[str]:
    """``python -m demo_app.collector --schema tests.thrift_gen.shop.ttypes:ShopEvent``; its URL."""
    keys = tmp_path / "keys.ini"
    keys.write_text(f"[event-publisher:keys]\nkey.name = {KEY}\n"
                    f"key.secret = {base64.b64encode(SECRET).decode()}\n")
    with serving_collector("demo_app.collector", "--port", "0", "--publisher-config",
                           str(keys), "--schema", SCHEMA,
                           "--db", str(tmp_path / "events.sqlite3")) as url:
        yield url


def test_a_users_own_schema_arrives_and_shows_by_field_id(
    queue_name: str, tmp_path: Path
) -> None:
    """Without --schema the collector takes the user's struct and shows its fields by id."""
    event = shop_event()
    with make_server(keys={KEY: SECRET}) as collector:
        logs = put_and_publish(queue_name, collector.url, [event], tmp_path)
        stored = wait_for_events(collector.url, [event.uuid])
    assert [event.uuid] == list(stored), logs
    assert {
        "1": "shop-web", "2": event.client_timestamp, "3": event.uuid, "4": "checkout",
        "5": "cart",
        "6": {"1": "c-1", "2": [{"1": "SKU-9", "2": 2, "3": 9.5}], "3": {"WELCOME": 5},
              "4": ["gift"], "5": True},
    } == stored[event.uuid]["fields"]
    assert None is stored[event.uuid]["named"]


def test_with_its_schema_the_collector_names_the_fields(
    queue_name: str, tmp_path: Path, collector_process: str
) -> None:
    """With --schema module:Struct the API shows the same event by field name, nested too."""
    event = shop_event()
    logs = put_and_publish(queue_name, collector_process, [event], tmp_path)
    row = wait_for_events(collector_process, [event.uuid])[event.uuid]
    assert {
        "source": "shop-web", "client_timestamp": event.client_timestamp, "uuid": event.uuid,
        "action": "checkout", "noun": "cart",
        "cart": {"cart_id": "c-1", "items": [{"sku": "SKU-9", "quantity": 2, "price": 9.5}],
                 "coupons": {"WELCOME": 5}, "labels": ["gift"], "gift": True},
    } == row["named"], logs
    assert ("shop-web", "checkout", "cart", event.client_timestamp) == (
        row["source"], row["action"], row["noun"], row["timestamp_ms"])


def test_an_event_with_two_uuid_fields_is_refused_with_the_flag_that_fixes_it(
    queue_name: str, tmp_path: Path
) -> None:
    """Two top-level UUID strings and no --uuid-field: a 422 naming both, on the API too."""
    good, ambiguous = shop_event(), shop_event(referrer_id=str(uuid.uuid4()))
    with make_server(keys={KEY: SECRET}) as collector:
        logs = put_and_publish(queue_name, collector.url, [good, ambiguous], tmp_path)
        document = requests.get(collector.url + "/api/events", timeout=10).json()
    assert [good.uuid] == [e["uuid"] for e in document["events"]], logs
    reasons = {r["reason"] for r in document["refused"]}
    assert {"fields 3, 7 all hold UUIDs; say which is the event's uuid with --uuid-field ID"
            } == reasons


def test_uuid_field_picks_the_uuid_among_several(queue_name: str, tmp_path: Path) -> None:
    """--uuid-field 3 takes field 3 as the uuid even when another field holds a UUID."""
    event = shop_event(referrer_id=str(uuid.uuid4()))
    with make_server(keys={KEY: SECRET}, uuid_field=3) as collector:
        logs = put_and_publish(queue_name, collector.url, [event], tmp_path)
        stored = wait_for_events(collector.url, [event.uuid])
    assert [event.uuid] == list(stored), logs
