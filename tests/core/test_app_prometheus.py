"""The apps' loss counters in Prometheus (events.prometheus / EVENTS_PROMETHEUS)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest
from flask import Flask, g
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from pyramid.config import Configurator
from pyramid.response import Response
from webtest import TestApp

from baseplate_events import ConfigError
from baseplate_events.flask import EXTENSION_KEY, EventsExtension
from baseplate_events.pyramid import REGISTRY_KEY
from event_schemas.event.ttypes import Event

ROOT = Path(__file__).resolve().parent.parent.parent
FAILED = "baseplate_events_put_failed_total"
DISCARDED = "baseplate_events_put_discarded_total"

#: The workers' program: a --preload-style master builds the Flask app, then forks
#: workers that each put events too large for the queue (counted, under the log policy).
WORKERS = '''
import os, sys
from flask import Flask, g
from baseplate_events.flask import EventsExtension
from event_schemas.event.ttypes import Event

queue_name, counts = sys.argv[1], [int(n) for n in sys.argv[2:]]
app = Flask("shop")
app.config.update(EVENTS_QUEUE_NAME=queue_name, EVENTS_MAX_MESSAGES=1,
                  EVENTS_MAX_MESSAGE_SIZE=512, EVENTS_ERRORS="log", EVENTS_PROMETHEUS=True)
EventsExtension(app)

@app.route("/put")
def put():
    g.events_v2.put(Event(action="view", noun="x" * 1000))
    return "ok"

workers = []
for count in counts:
    pid = os.fork()
    if pid == 0:
        client = app.test_client()
        for _ in range(count):
            assert b"ok" == client.get("/put").data
        os._exit(0)
    workers.append(pid)
print(" ".join(str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])) for pid in workers))
'''


@pytest.fixture
def flask_app(queue_name: str) -> Iterator[Flask]:
    """A Flask app with Prometheus loss counters whose events are too large for its queue."""
    app = Flask("shop")
    app.config.update(EVENTS_QUEUE_NAME=queue_name, EVENTS_MAX_MESSAGES=1,
                      EVENTS_MAX_MESSAGE_SIZE=512, EVENTS_ERRORS="log", EVENTS_PROMETHEUS=True)
    EventsExtension(app)

    @app.route("/put")
    def put() -> str:
        g.events_v2.put(Event(action="view", noun="x" * 1000))
        return "ok"

    yield app
    app.extensions[EXTENSION_KEY].runtime.close()


def test_a_failed_put_is_counted_by_queue_and_error(flask_app: Flask, queue_name: str):
    """Two puts refused as too large: put_failed_total{queue, error="EventTooLargeError"} is 2."""
    client = flask_app.test_client()
    for _ in range(2):
        assert b"ok" == client.get("/put").data
    labels = {"queue": queue_name, "error": "EventTooLargeError"}
    assert 2.0 == REGISTRY.get_sample_value(FAILED, labels)


def test_the_discarded_counter_is_there_at_zero_before_any_loss(flask_app: Flask, queue_name: str):
    """A scrape right after start-up already shows put_discarded_total{queue} at 0."""
    assert 0.0 == REGISTRY.get_sample_value(DISCARDED, {"queue": queue_name})


def test_events_held_by_a_failed_request_are_counted_as_discarded(queue_name: str):
    """Pyramid, transactional: a view that puts two events and answers 500 adds 2."""

    def view(request):
        request.events_v2.put(Event(action="view"))
        request.events_v2.put(Event(action="view"))
        return Response("no", status=500)

    with Configurator(settings={"events.queue_name": queue_name, "events.max_messages": "1",
                                "events.max_message_size": "512", "events.prometheus": "true",
                                "events.transactional": "true"}) as config:
        config.include("baseplate_events.pyramid")
        config.add_route("put", "/put")
        config.add_view(view, route_name="put")
        app = config.make_wsgi_app()
    try:
        TestApp(app).get("/put", status=500)
    finally:
        app.registry[REGISTRY_KEY].close()
    assert 2.0 == REGISTRY.get_sample_value(DISCARDED, {"queue": queue_name})


def test_without_the_setting_nothing_is_exported(queue_name: str):
    """Prometheus is off by default: a failed put leaves no series for its queue."""
    app = Flask("shop")
    app.config.update(EVENTS_QUEUE_NAME=queue_name, EVENTS_MAX_MESSAGES=1,
                      EVENTS_MAX_MESSAGE_SIZE=512, EVENTS_ERRORS="log")
    EventsExtension(app)

    @app.route("/put")
    def put() -> str:
        g.events_v2.put(Event(action="view", noun="x" * 1000))
        return "ok"

    try:
        assert b"ok" == app.test_client().get("/put").data
    finally:
        app.extensions[EXTENSION_KEY].runtime.close()
    labels = {"queue": queue_name, "error": "EventTooLargeError"}
    assert (None, None) == (REGISTRY.get_sample_value(FAILED, labels),
                            REGISTRY.get_sample_value(DISCARDED, {"queue": queue_name}))


def test_a_bad_value_names_the_key():
    """EVENTS_PROMETHEUS must be a boolean."""
    app = Flask("shop")
    app.config["EVENTS_PROMETHEUS"] = "maybe"
    with pytest.raises(ConfigError) as info:
        EventsExtension(app)
    assert "EVENTS_PROMETHEUS: expected true or false, got 'maybe'" == str(info.value)


def test_without_prometheus_client_the_setting_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
):
    """prometheus_client missing (simulated): events.prometheus = true stops the include."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with Configurator(settings={"events.prometheus": "true"}) as config:
        with pytest.raises(ConfigError) as info:
            config.include("baseplate_events.pyramid")
    expected = ("events.prometheus: needs the prometheus_client package "
                "(pip install 'baseplate-events[prometheus]')")
    assert expected == str(info.value)


def scrape(registry: CollectorRegistry) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """The exposition text of ``registry``, parsed back with prometheus_client's parser."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.system
def test_forked_workers_counts_add_up_in_multiprocess_mode(queue_name: str, tmp_path: Path):
    """gunicorn-style: a master forks two workers (3 and 4 losses); one collector reads 7."""
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir))
    result = subprocess.run([sys.executable, "-c", WORKERS, queue_name, "3", "4"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert (0, "0 0\n") == (result.returncode, result.stdout), result.stderr
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))
    samples = scrape(registry)
    failed = (FAILED, (("error", "EventTooLargeError"), ("queue", queue_name)))
    assert (7.0, 0.0) == (samples[failed], samples[(DISCARDED, (("queue", queue_name),))])
    # One file per process that counted: the master's (the discarded series) and each worker's.
    assert 3 == len(list(multiproc_dir.glob("counter_*.db")))
