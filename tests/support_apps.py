"""Small Pyramid and Flask apps on the test's queue, each closed when its test ends.

The ``apps`` fixture (tests/conftest.py) hands a test an :class:`Apps`; test
modules keep their own views and settings and build their apps through it.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List

from flask import Flask
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from baseplate_events.flask import EXTENSION_KEY, EventsExtension
from baseplate_events.pyramid import REGISTRY_KEY

PyramidViews = Dict[str, Callable[[Request], Response]]
FlaskViews = Dict[str, Callable[[], str]]


class Apps:
    """Builds apps on ``/events-<queue_name>``; :meth:`close` closes the queue of each."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._closers: List[Callable[[], None]] = []

    def pyramid(self, views: PyramidViews, settings: Dict[str, str]) -> TestApp:
        """A Pyramid app that includes baseplate_events.pyramid, one route a view (path: view)."""
        config = Configurator(settings={"events.queue_name": self.queue_name, **settings})
        config.include("baseplate_events.pyramid")
        for path, view in views.items():
            config.add_route(path, path)
            config.add_view(view, route_name=path)
        app = config.make_wsgi_app()
        self._closers.append(app.registry[REGISTRY_KEY].close)
        return TestApp(app)

    def flask(self, import_name: str, views: FlaskViews, config: Dict[str, Any]) -> Flask:
        """A Flask app with EventsExtension, ``config`` over the queue name, one URL a view.

        ``import_name`` is the test module's ``__name__``: the default events.source.
        """
        app = Flask(import_name)
        app.config.update(EVENTS_QUEUE_NAME=self.queue_name, **config)
        EventsExtension(app)
        for path, view in views.items():
            app.add_url_rule(path, view_func=view)
        self._closers.append(app.extensions[EXTENSION_KEY].runtime.close)
        return app

    def close(self) -> None:
        for close in self._closers:
            close()
