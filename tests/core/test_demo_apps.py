"""The demo apps through their real frameworks, reading their events back from real queues."""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterator, Optional

import pytest
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.TSerialization import deserialize
from webtest import TestApp

from baseplate_events.mqueue.posix import MessageQueue
from demo_app import flask_app, pyramid_app
from event_schemas.event.ttypes import Event
from tests.conftest import TEST_MAX_MESSAGE_SIZE, TEST_MAX_MESSAGES, unique_queue_name

SIZES: Dict[str, Any] = dict(max_messages=TEST_MAX_MESSAGES, max_message_size=TEST_MAX_MESSAGE_SIZE)


def decode(message: bytes) -> Event:
    return deserialize(Event(), message, TJSONProtocolFactory())  # type: ignore[no-any-return]


@pytest.fixture
def v1_queue_name() -> Iterator[str]:
    """A second unique queue name, for the legacy events; unlinked on teardown."""
    import posix_ipc

    name = unique_queue_name("v1")
    yield name
    try:
        posix_ipc.unlink_message_queue("/events-" + name)
    except posix_ipc.ExistentialError:
        pass


@pytest.fixture
def shop(queue_name: str) -> Iterator[TestApp]:
    app = pyramid_app.make_app(queue_name, put_timeout=0, **SIZES)
    yield TestApp(app)
    app.registry["baseplate_events"].close()


@pytest.fixture
def forum(queue_name: str, v1_queue_name: str) -> Iterator[Any]:
    app = flask_app.make_app(queue_name, v1_queue_name, put_timeout=0, **SIZES)
    yield app
    app.extensions["baseplate_events"].runtime.close()
    flask_app.close_legacy_queue(app)


@pytest.mark.parametrize("method, path, body, action, noun", [
    ("GET", "/products/kettle", None, "view", "product"),
    ("GET", "/search?q=tea", None, "search", "results"),
    ("POST", "/cart", {"product_id": "mug", "quantity": 2}, "add", "cart_item"),
    ("POST", "/checkout", {"items": [{"product_id": "tea", "quantity": 3}]}, "purchase", "order"),
])
def test_each_shop_view_puts_one_autofilled_v2_event(
    shop: TestApp, reader: MessageQueue, method: str, path: str,
    body: Optional[Dict[str, Any]], action: str, noun: str,
) -> None:
    """The Pyramid views put one event each, with source, timestamp and uuid filled in."""
    if method == "GET":
        response = shop.get(path)
    else:
        response = shop.post_json(path, body)
    event = decode(reader.get(timeout=0))
    assert (action, noun, "demo-shop") == (event.action, event.noun, event.source)
    assert [{"uuid": event.uuid, "queue": "v2", "source": "demo-shop", "action": action}] == (
        response.json["events"])
    assert event.client_timestamp > 1_600_000_000_000
    assert path.split("?")[0] == event.request.base_url


def test_the_checkout_event_carries_the_order_total(shop: TestApp, reader: MessageQueue) -> None:
    """Doubles and maps of the sample schema survive the trip through the queue."""
    shop.post_json("/checkout", {"items": [{"product_id": "tea", "quantity": 2},
                                           {"product_id": "mug", "quantity": 1}]})
    event = decode(reader.get(timeout=0))
    assert (33.05, {"items": 2.0, "total": 33.05}) == (event.value, event.measurements)


@pytest.mark.parametrize("method, path, body, action", [
    ("POST", "/posts", {"community": "tea", "title": "First"}, "submit"),
    ("GET", "/posts/12", None, "view"),
    ("POST", "/posts/12/vote", {"direction": -1}, "vote"),
])
def test_each_forum_view_puts_one_autofilled_v2_event(
    forum: Any, reader: MessageQueue, method: str, path: str,
    body: Optional[Dict[str, Any]], action: str,
) -> None:
    """The Flask views put one event each through flask.g.events_v2."""
    response = forum.test_client().open(path, method=method, json=body,
                                        headers={"X-User-Id": "u7"})
    event = decode(reader.get(timeout=0))
    assert (action, "post", "demo-forum") == (event.action, event.noun, event.source)
    assert event.uuid == response.get_json()["events"][0]["uuid"]
    assert ("u7", True, {"new_editor"}) == (
        event.user.user_id, event.user.logged_in, event.user.features)


def test_signup_puts_a_legacy_v1_event_on_the_second_queue(
    forum: Any, v1_queue_name: str, open_queues: Callable[..., MessageQueue]
) -> None:
    """POST /signup writes baseplate's v1 JSON, with the e-mail under obfuscated_data."""
    response = forum.test_client().post("/signup", json={"plan": "plus", "email": "a@example.com"},
                                        headers={"Referer": "https://example.com/ad"})
    v1_reader = open_queues("/events-" + v1_queue_name)
    document = json.loads(v1_reader.get(timeout=0))
    assert ("account", "signup") == (document["event_topic"], document["event_type"])
    assert {"plan": "plus", "newsletter": False,
            "obfuscated_data": {"email": "a@example.com"},
            "interana_excluded": {"referrer": "https://example.com/ad"}} == document["payload"]
    assert document["uuid"] == response.get_json()["events"][0]["uuid"]


def test_a_full_queue_answers_503_with_retry_after(shop: TestApp, reader: MessageQueue) -> None:
    """When the publisher is behind, the view says so and the client may retry."""
    for _ in range(TEST_MAX_MESSAGES):
        shop.get("/products/mug")
    response = shop.get("/products/mug", status=503)
    assert "1" == response.headers["Retry-After"]
    assert response.json["error"].startswith("the event queue /events-")
