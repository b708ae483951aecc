"""Platforms without POSIX message queues, and the log sink.

macOS has no ``resource.RLIMIT_MSGQUEUE`` and builds posix_ipc without
``MessageQueue``; the tests simulate that platform by taking both away, then
drive real Pyramid and Flask apps through it. The log sink also runs on Linux
when chosen, through the whole put path.
"""
from __future__ import annotations

import json
import logging
import resource
from typing import Any, Callable, Dict, List

import posix_ipc
import pytest
from flask import Flask, g
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from baseplate_events import EventQueue, serialize_v2_event
from baseplate_events.errors import QueuesUnsupportedError
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.pyramid import REGISTRY_KEY
from baseplate_events.mqueue.limits import kernel_limits
from baseplate_events.runtime.settings import parse_settings, pyramid_key
from baseplate_events.testing import capture_events
from baseplate_events.runtime.request_events import EventsRuntime
from event_schemas.event.ttypes import Event

from tests.support.apps import flask_config, flask_test_app, pyramid_settings, pyramid_test_app

NO_QUEUES_WARNING = (
    "this platform has no POSIX message queues, so events go to the log (one JSON "
    "line each) instead of to a publisher; set {key} = log to say so and silence "
    "this warning"
)
UNSUPPORTED = (
    "cannot open message queue /events-{name}: this platform has no POSIX message "
    "queues (posix_ipc was built without them, as on macOS). To develop here, write "
    'events to the log instead: events.sink = log (Pyramid) or EVENTS_SINK = "log" (Flask)'
)
FIXED = {"source": "shop", "client_timestamp": 1_700_000_000_000, "uuid": "0" * 8 + "-1"}


@pytest.fixture
def no_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate macOS: no RLIMIT_MSGQUEUE, and posix_ipc without MessageQueue."""
    monkeypatch.delattr(resource, "RLIMIT_MSGQUEUE")
    monkeypatch.delattr(posix_ipc, "MessageQueue")
    monkeypatch.setattr(posix_ipc, "MESSAGE_QUEUES_SUPPORTED", False)


def put_view(request: Request) -> Response:
    request.events_v2.put(Event(action="buy", noun=request.params.get("noun")))
    return Response("ok")


def fixed_view(request: Request) -> Response:
    request.events_v2.put(Event(action="buy", noun="hat", **FIXED))
    return Response("ok")


def big_view(request: Request) -> Response:
    request.events_v2.put(Event(noun="x" * 3000))
    return Response("ok")


def failing_view(request: Request) -> Response:
    request.events_v2.put(Event(noun="rolled back"))
    return Response("broken", status=500)


PYRAMID_VIEWS = {"/put": put_view, "/fixed": fixed_view, "/big": big_view, "/fail": failing_view}


def flask_put() -> str:
    g.events_v2.put(Event(action="buy", noun="hat"))
    return "ok"


@pytest.fixture
def pyramid_app(queue_name: str, runtimes: List[EventsRuntime]) -> Callable[..., TestApp]:
    """A Pyramid app on the test queue; its queue is closed on teardown."""

    def factory(**settings: str) -> TestApp:
        settings = pyramid_settings(queue_name, **{"events.source": "shop", **settings})
        return pyramid_test_app(settings, PYRAMID_VIEWS, runtimes)

    return factory


@pytest.fixture
def flask_app(queue_name: str, runtimes: List[EventsRuntime]) -> Callable[..., Flask]:
    """A Flask app on the test queue; its queue is closed on teardown."""

    def factory(**config: Any) -> Flask:
        config = flask_config(queue_name, **{"EVENTS_SOURCE": "shop", **config})
        return flask_test_app(__name__, config, {"/put": flask_put}, runtimes)

    return factory


def event_lines(caplog: pytest.LogCaptureFixture) -> List[Dict[str, Any]]:
    records = caplog.records
    return [json.loads(r.getMessage()) for r in records if r.name == "baseplate_events.events"]


def test_pyramid_without_queues_logs_each_event_as_json(
    no_queues: None, pyramid_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    """Simulated macOS: include works, a put gives 200 and one JSON line, auto-filled."""
    with caplog.at_level(logging.INFO):
        app = pyramid_app()
        response = app.get("/put", {"noun": "hat"})
    [line] = event_lines(caplog)
    event = line["event"]
    assert ("ok", "hat", "shop", True, True) == (
        response.text,
        event["3"]["str"],
        event["1"]["str"],
        "i64" in event["4"],
        "str" in event["5"],
    )


def test_pyramid_warns_once_at_start_up_without_queues(
    no_queues: None, pyramid_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    """The switch to the log sink is said once, at include, not per request."""
    with caplog.at_level(logging.WARNING):
        app = pyramid_app()
        app.get("/put")
        app.get("/put")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [NO_QUEUES_WARNING.format(key="events.sink")] == warnings


def test_flask_without_queues_logs_each_event_as_json(
    no_queues: None, flask_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Simulated macOS: init_app warns once, a put gives 200 and one JSON line."""
    with caplog.at_level(logging.INFO):
        app = flask_app()
        response = app.test_client().get("/put")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert (200, [NO_QUEUES_WARNING.format(key="EVENTS_SINK")], 1, "log") == (
        response.status_code,
        warnings,
        len(event_lines(caplog)),
        app.config["EVENTS_SINK"],
    )


def test_capture_events_works_without_queues(
    no_queues: None, pyramid_app: Callable[..., TestApp]
) -> None:
    """A unit test with capture_events runs on simulated macOS and records the event."""
    app = pyramid_app()
    with capture_events() as captured:
        app.get("/put", {"noun": "cap"})
    assert ["cap"] == [event.noun for event in captured.events]


def test_an_explicit_queue_sink_without_queues_fails_under_the_error_policy(
    no_queues: None,
    pyramid_app: Callable[..., TestApp],
    caplog: pytest.LogCaptureFixture,
    queue_name: str,
) -> None:
    """events.sink = queue on simulated macOS: include works, puts fail, logged and counted."""
    with caplog.at_level(logging.WARNING):
        app = pyramid_app(**{"events.sink": "queue", "events.errors": "log"})
        response = app.get("/put")
    runtime = app.app.registry[REGISTRY_KEY]
    expected = [
        f"this platform has no POSIX message queues, so every put to /events-{queue_name} "
        "will fail; for development, send events to the log instead with events.sink = log",
        "event not sent (QueuesUnsupportedError): " + UNSUPPORTED.format(name=queue_name),
    ]
    assert ("ok", 1, expected) == (response.text, runtime.failed, caplog.messages)


def test_event_queue_without_queues_says_why(no_queues: None, queue_name: str) -> None:
    """EventQueue on a platform without queues raises an error naming the way out."""
    with pytest.raises(QueuesUnsupportedError) as info:
        EventQueue(queue_name)
    assert UNSUPPORTED.format(name=queue_name) == str(info.value)


def test_kernel_limits_without_rlimit_msgqueue(no_queues: None) -> None:
    """kernel_limits() reports an unknown ulimit -q instead of crashing."""
    assert None is kernel_limits()["ulimit_q"]


def test_linux_keeps_the_queue_sink_silently(caplog: pytest.LogCaptureFixture) -> None:
    """With POSIX queues the default sink is the queue, and nothing is logged about it."""
    with caplog.at_level(logging.DEBUG, logger="baseplate_events"):
        settings = parse_settings({}, pyramid_key)
    assert ("queue", []) == (settings.sink, caplog.messages)


def test_log_sink_line_holds_the_exact_queue_message(
    pyramid_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture, queue_name: str
) -> None:
    """events.sink = log on Linux writes the bytes a queue would carry, in one JSON line."""
    with caplog.at_level(logging.INFO, logger="baseplate_events.events"):
        pyramid_app(**{"events.sink": "log"}).get("/fixed")
    message = serialize_v2_event(Event(action="buy", noun="hat", **FIXED)).decode()
    expected = '{"queue": "/events-' + queue_name + '", "event": ' + message + "}"
    assert [expected] == caplog.messages


def test_log_sink_opens_no_queue(pyramid_app: Callable[..., TestApp], queue_name: str) -> None:
    """With the log sink nothing is created on the machine's queues."""
    pyramid_app(**{"events.sink": "log"}).get("/put")
    with pytest.raises(Exception) as info:
        MessageQueue("/events-" + queue_name, 1, 1, create=False)
    assert f"message queue /events-{queue_name} does not exist" == str(info.value)


def test_log_sink_checks_the_configured_size(
    pyramid_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    """An event larger than events.max_message_size fails as it would on a queue."""
    with caplog.at_level(logging.INFO):
        app = pyramid_app(**{"events.sink": "log", "events.errors": "log"})
        app.get("/big")
    assert (1, [], "event not sent (EventTooLargeError): event is 3112 bytes; this queue "
            "takes at most 2048") == (
        app.app.registry[REGISTRY_KEY].failed,
        event_lines(caplog),
        caplog.messages[-1],
    )


def test_log_sink_keeps_the_transactional_decision(
    pyramid_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    """A transactional request that fails logs none of its events; one that succeeds does."""
    with caplog.at_level(logging.INFO, logger="baseplate_events.events"):
        app = pyramid_app(**{"events.sink": "log", "events.transactional": "true"})
        app.get("/fail", status=500)
        app.get("/put", {"noun": "kept"})
    assert ["kept"] == [line["event"]["3"]["str"] for line in event_lines(caplog)]
