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


@pytest.fixture
def statsd_socket_v6():
    """A real UDP socket on the IPv6 loopback standing in for statsd."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def test_flask_counts_to_an_ipv6_literal_endpoint(queue_name, reader, statsd_socket_v6):
    """EVENTS_METRICS_ENDPOINT = [::1]:PORT starts the app and gets its counters."""
    port = statsd_socket_v6.getsockname()[1]
    app = make_app(queue_name, {"EVENTS_ERRORS": "log",
                                "EVENTS_METRICS_ENDPOINT": f"[::1]:{port}"})
    try:
        client = app.test_client()
        for _ in range(reader.max_messages + 1):
            assert b"ok" == client.get("/put").data
        assert b"baseplate_events.put.failed.EventQueueFullError:1|c" == statsd_socket_v6.recv(512)
    finally:
        app.extensions[EXTENSION_KEY].runtime.close()


def test_pyramid_counts_to_an_ipv6_literal_endpoint(queue_name, reader, statsd_socket_v6,
                                                    runtimes):
    """events.metrics_endpoint = [::1]:PORT starts the app and gets its counters."""
    from pyramid.response import Response

    from tests.support.apps import pyramid_settings, pyramid_test_app

    def put(request):
        request.events_v2.put(Event(action="view"))
        return Response("ok")

    port = statsd_socket_v6.getsockname()[1]
    settings = pyramid_settings(queue_name, **{"events.errors": "log",
                                               "events.metrics_endpoint": f"[::1]:{port}"})
    app = pyramid_test_app(settings, {"/put": put}, runtimes)
    for _ in range(reader.max_messages + 1):
        assert "ok" == app.get("/put").text
    assert b"baseplate_events.put.failed.EventQueueFullError:1|c" == statsd_socket_v6.recv(512)


def test_an_unresolvable_statsd_host_does_not_stop_the_app(queue_name, reader, caplog):
    """A statsd name that does not resolve at boot: the app starts, with one warning."""
    app = make_app(queue_name, {"EVENTS_ERRORS": "log",
                                "EVENTS_METRICS_ENDPOINT": "statsd.invalid:8125"})
    try:
        client = app.test_client()
        for _ in range(reader.max_messages + 2):
            assert b"ok" == client.get("/put").data
        warnings = [r.getMessage() for r in caplog.records if "statsd.invalid" in r.getMessage()]
        assert 1 == len(warnings), warnings
        assert warnings[0].startswith(
            "EVENTS_METRICS_ENDPOINT: statsd host statsd.invalid does not resolve now (")
        assert warnings[0].endswith("); counting locally and trying again every 30s")
    finally:
        app.extensions[EXTENSION_KEY].runtime.close()


def test_a_statsd_host_that_resolves_later_gets_the_counts_kept_meanwhile(
    statsd_socket, monkeypatch
):
    """Counted while the name did not resolve, sent in one sum once it does.

    The one monkeypatch: getaddrinfo fails once, a DNS fault no local peer can make.
    """
    from baseplate_events.runtime import statsd_target

    real = socket.getaddrinfo
    failures = [socket.gaierror(socket.EAI_NONAME, "Name or service not known")]

    def getaddrinfo(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(statsd_target.socket, "getaddrinfo", getaddrinfo)
    port = statsd_socket.getsockname()[1]
    target = statsd_target.StatsdTarget("127.0.0.1", port, "ns", key="metrics.endpoint",
                                        retry_interval=0.0)
    assert not target.resolved
    target.incr("put.failed.EventQueueFullError", 2)
    target.incr("put.failed.EventQueueFullError")
    assert b"ns.put.failed.EventQueueFullError:3|c" == statsd_socket.recv(512)
    assert target.resolved


def test_a_malformed_ipv6_endpoint_names_the_key(queue_name):
    """An unclosed bracket is still a configuration error naming the key."""
    with pytest.raises(ConfigError) as info:
        make_app(queue_name, {"EVENTS_METRICS_ENDPOINT": "[::1:8125"})
    assert ("EVENTS_METRICS_ENDPOINT: expected host:port with an IPv6 address in brackets "
            "([::1]:8125), got '[::1:8125'") == str(info.value)
