"""App-side loss metrics: statsd counters for events a request could not put."""
from __future__ import annotations

import socket

import pytest
from flask import Flask, g

from baseplate_events import ConfigError, EventQueueFullError
from baseplate_events.flask import EXTENSION_KEY, EventsExtension
from event_schemas.event.ttypes import Event


@pytest.fixture
def statsd_socket():
    """A real UDP socket standing in for statsd, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def make_app(queue_name, config):
    app = Flask("metrics_app")
    app.config.update(EVENTS_QUEUE_NAME=queue_name, EVENTS_MAX_MESSAGES=1,
                      EVENTS_MAX_MESSAGE_SIZE=512, **config)
    EventsExtension(app)

    @app.route("/put")
    def put():
        g.events_v2.put(Event(action="view"))
        return "ok"

    return app


def test_failed_put_is_counted_in_statsd(queue_name, reader, statsd_socket):
    """Under the log policy a full queue sends <namespace>.put.failed.<Error> to statsd."""
    port = statsd_socket.getsockname()[1]
    app = make_app(queue_name, {"EVENTS_ERRORS": "log",
                                "EVENTS_METRICS_ENDPOINT": f"127.0.0.1:{port}",
                                "EVENTS_METRICS_NAMESPACE": "shop.events"})
    try:
        client = app.test_client()
        for _ in range(reader.max_messages + 1):
            assert b"ok" == client.get("/put").data
        assert b"shop.events.put.failed.EventQueueFullError:1|c" == statsd_socket.recv(512)
        assert 1 == app.extensions[EXTENSION_KEY].runtime.failed
    finally:
        app.extensions[EXTENSION_KEY].runtime.close()


def test_failed_put_is_counted_under_raise_policy(queue_name, reader, statsd_socket):
    """Under the raise policy the error reaches the view and is still counted."""
    port = statsd_socket.getsockname()[1]
    app = make_app(queue_name, {"EVENTS_METRICS_ENDPOINT": f"127.0.0.1:{port}"})
    app.testing = True
    try:
        client = app.test_client()
        for _ in range(reader.max_messages):
            client.get("/put")
        with pytest.raises(EventQueueFullError):
            client.get("/put")
        assert b"baseplate_events.put.failed.EventQueueFullError:1|c" == statsd_socket.recv(512)
    finally:
        app.extensions[EXTENSION_KEY].runtime.close()


def test_bad_metrics_endpoint_names_the_key(queue_name):
    """A metrics endpoint that is not host:port is refused at init_app."""
    with pytest.raises(ConfigError) as info:
        make_app(queue_name, {"EVENTS_METRICS_ENDPOINT": "statsd"})
    assert "EVENTS_METRICS_ENDPOINT: expected host:port, got 'statsd'" == str(info.value)
