"""``baseplate_events.testing``: assert on the events views put, without a queue."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

import posix_ipc
import pytest
from flask import Flask, g
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from baseplate_events import EventTooLargeError, serialize_v2_event
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.testing import CapturedEvents, capture_events
from baseplate_events.testing import captured_events  # noqa: F401 - the pytest fixture
from baseplate_events.runtime.request_events import EventsRuntime
from event_schemas.event.ttypes import Event

from tests.support.apps import flask_test_app, pyramid_settings, pyramid_test_app


def put_view(request: Request) -> Response:
    request.events_v2.put(Event(source="shop", action="buy", noun=request.params.get("noun")))
    return Response("ok")


def failing_view(request: Request) -> Response:
    request.events_v2.put(Event(noun="rolled back"))
    return Response("broken", status=500)


def flask_put() -> str:
    g.events_v2.put(Event(action="buy"))
    return "ok"


@pytest.fixture
def pyramid_app(queue_name: str, runtimes: List[EventsRuntime]) -> Callable[..., TestApp]:
    """A Pyramid app on the test queue; its queue is closed on teardown."""

    def factory(**settings: str) -> TestApp:
        views = {"/put": put_view, "/fail": failing_view}
        return pyramid_test_app(pyramid_settings(queue_name, **settings), views, runtimes)

    return factory


@pytest.fixture
def flask_app(queue_name: str, runtimes: List[EventsRuntime]) -> Flask:
    """A Flask app on the test queue; its queue is closed on teardown."""
    config = {"EVENTS_QUEUE_NAME": queue_name, "EVENTS_MAX_MESSAGE_SIZE": 2048}
    return flask_test_app(__name__, config, {"/put": flask_put}, runtimes)


def test_pyramid_events_are_captured(pyramid_app: Callable[..., TestApp]) -> None:
    """A Pyramid view's events are recorded, auto-filled, in order."""
    with capture_events() as captured:
        pyramid_app().get("/put", {"noun": "hat"})
        pyramid_app().get("/put", {"noun": "scarf"})
    assert [("buy", "hat"), ("buy", "scarf")] == [(e.action, e.noun) for e in captured.events]


def test_flask_events_are_captured(flask_app: Flask) -> None:
    """A Flask view's events are recorded, with the app's import name as source."""
    with capture_events() as captured:
        flask_app.test_client().get("/put")
    assert [("tests.core.test_testing", "buy")] == [(e.source, e.action) for e in captured.events]


def test_capture_opens_no_queue(pyramid_app: Callable[..., TestApp], queue_name: str) -> None:
    """While capturing, no POSIX queue is opened or created."""
    with capture_events():
        pyramid_app().get("/put")
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/events-" + queue_name)


def test_captured_bytes_are_the_queue_message(pyramid_app: Callable[..., TestApp]) -> None:
    """Each capture holds the exact bytes the queue would have received."""
    with capture_events() as captured:
        pyramid_app().get("/put")
    assert [serialize_v2_event(captured.events[0])] == captured.serialized


def test_captured_event_decodes(pyramid_app: Callable[..., TestApp]) -> None:
    """``decode`` reads the bytes back into a fresh struct with Thrift's protocol."""
    with capture_events() as captured:
        pyramid_app().get("/put", {"noun": "hat"})
    assert captured[0].event == captured[0].decode(Event)


def test_captured_event_as_json(pyramid_app: Callable[..., TestApp]) -> None:
    """``json`` parses the message: TJSONProtocol keys fields by id."""
    with capture_events() as captured:
        pyramid_app().get("/put", {"noun": "hat"})
    expected: Dict[str, Any] = {"str": "hat"}
    assert expected == captured[0].json()["3"]


def test_failed_transactional_request_captures_nothing(
    pyramid_app: Callable[..., TestApp],
) -> None:
    """Events a failed transactional request held are not recorded."""
    with capture_events() as captured:
        pyramid_app(**{"events.transactional": "true"}).get("/fail", status=500)
    assert [] == captured


def test_oversized_event_still_raises(flask_app: Flask) -> None:
    """The configured max_message_size is enforced as a queue would."""
    @flask_app.route("/big")
    def big() -> str:
        g.events_v2.put(Event(payload=b"x" * 3000))
        return "ok"

    flask_app.testing = True
    with capture_events(), pytest.raises(EventTooLargeError):
        flask_app.test_client().get("/big")


def test_events_go_to_the_queue_again_afterwards(
    flask_app: Flask, queue_name: str, open_queues: Callable[..., MessageQueue]
) -> None:
    """Leaving the block restores real sending."""
    reader = open_queues("/events-" + queue_name, 10, 2048)
    with capture_events():
        flask_app.test_client().get("/put")
    flask_app.test_client().get("/put")
    assert 1 == reader.depth


def test_innermost_capture_records(flask_app: Flask) -> None:
    """Nested captures: the innermost one receives the events."""
    with capture_events() as outer:
        with capture_events() as inner:
            flask_app.test_client().get("/put")
    assert (0, 1) == (len(outer), len(inner))


def test_pytest_fixture(flask_app: Flask, captured_events: CapturedEvents) -> None:  # noqa: F811
    """The ``captured_events`` fixture captures for the whole test."""
    flask_app.test_client().get("/put")
    assert ["buy"] == [event.action for event in captured_events.events]
