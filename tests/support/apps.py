"""What the request-integration tests share: Pyramid and Flask apps on the test queue.

Each builder takes the ``runtimes`` fixture's list (see ``conftest.py``) and
adds the app's runtime to it, so the app's process-wide queue descriptor is
closed on teardown whatever the test does. Also here: a struct of a schema the
integrations have never seen, and reading a queue message back with Thrift.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

from flask import Flask
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from thrift.protocol.TBase import TBase
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.Thrift import TType
from thrift.TSerialization import deserialize
from webtest import TestApp

from baseplate_events.flask import EXTENSION_KEY, EventsExtension
from baseplate_events.pyramid import REGISTRY_KEY
from baseplate_events.runtime.request_events import EventsRuntime
from event_schemas.event.ttypes import Event

#: The message size of the tests' small queues (10 messages of it).
MESSAGE_SIZE = 2048

PyramidView = Callable[[Request], Response]


class Signup(TBase):
    """A struct of a schema the integration has never seen."""

    __slots__ = ("uuid", "plan", "client_timestamp")
    thrift_spec = (
        None,
        (1, TType.STRING, "plan", "UTF8", None),
        (2, TType.I64, "client_timestamp", None, None),
        (3, TType.STRING, "uuid", "UTF8", None),
    )

    def __init__(
        self,
        plan: Optional[str] = None,
        client_timestamp: Optional[int] = None,
        uuid: Optional[str] = None,
    ) -> None:
        self.plan = plan
        self.client_timestamp = client_timestamp
        self.uuid = uuid


def decode(message: bytes, struct: Any = None) -> Any:
    """Read a queue message back with Thrift's own TJSONProtocol."""
    return deserialize(struct if struct is not None else Event(), message, TJSONProtocolFactory())


def pyramid_settings(queue_name: str, **settings: str) -> Dict[str, str]:
    """``events.*`` for a small queue (10 messages of :data:`MESSAGE_SIZE`), then ``settings``."""
    return {
        "events.queue_name": queue_name,
        "events.max_messages": "10",
        "events.max_message_size": str(MESSAGE_SIZE),
        **settings,
    }


def flask_config(queue_name: str, **config: Any) -> Dict[str, Any]:
    """``EVENTS_*`` for a small queue (10 messages of :data:`MESSAGE_SIZE`), then ``config``."""
    return {
        "EVENTS_QUEUE_NAME": queue_name,
        "EVENTS_MAX_MESSAGES": 10,
        "EVENTS_MAX_MESSAGE_SIZE": MESSAGE_SIZE,
        **config,
    }


def add_routes(config: Configurator, views: Mapping[str, PyramidView]) -> None:
    """Route each path to its view, the route named by its path."""
    for path, view in views.items():
        config.add_route(path, path)
        config.add_view(view, route_name=path)


def pyramid_test_app(
    settings: Dict[str, str],
    views: Mapping[str, PyramidView],
    runtimes: List[EventsRuntime],
    setup: Optional[Callable[[Configurator], None]] = None,
) -> TestApp:
    """A Pyramid app that includes baseplate_events, serving ``views``; then ``setup(config)``."""
    config = Configurator(settings=settings)
    config.include("baseplate_events.pyramid")
    add_routes(config, views)
    if setup is not None:
        setup(config)
    wsgi = config.make_wsgi_app()
    runtimes.append(wsgi.registry[REGISTRY_KEY])
    return TestApp(wsgi)


def flask_runtime(app: Flask) -> EventsRuntime:
    """The runtime ``EventsExtension`` keeps for ``app``."""
    runtime: EventsRuntime = app.extensions[EXTENSION_KEY].runtime
    return runtime


def flask_test_app(
    import_name: str,
    config: Dict[str, Any],
    routes: Mapping[str, Callable[[], str]],
    runtimes: List[EventsRuntime],
) -> Flask:
    """A Flask app with ``EventsExtension(app)``, serving each of ``routes`` at its path."""
    app = Flask(import_name)
    app.config.update(config)
    EventsExtension(app)
    for path, view in routes.items():
        app.add_url_rule(path, view_func=view)
    runtimes.append(flask_runtime(app))
    return app
