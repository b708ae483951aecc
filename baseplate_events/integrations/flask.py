"""Flask: ``EventsExtension(app)`` and every request has ``flask.g.events_v2``.

The same object is ``flask.request.events_v2``; its ``put(event)`` completes a
Thrift event and puts it on one process-wide queue (v2 serializer), see
:mod:`baseplate_events.runtime.request_events`. With an application factory::

    events = EventsExtension()

    def create_app():
        app = Flask(__name__)
        events.init_app(app)
        return app

Config keys, all optional, read once by ``init_app`` (a bad value raises
:class:`~baseplate_events.ConfigError` naming the key): ``EVENTS_<NAME>`` for
each setting of :data:`baseplate_events.runtime.settings.APP_SETTINGS`, whose defaults
``init_app`` writes into ``app.config``.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional, TypeVar

from flask import Flask, Response, current_app, g, has_request_context, request
from flask.signals import appcontext_pushed, request_started

from ..errors import EventError
from ..runtime.request_events import EventsRuntime, Filler, RequestEvents
from ..runtime.settings import APP_SETTINGS, WORKED_OUT, default_source, flask_key, parse_settings

__all__ = ["EXTENSION_KEY", "EventsExtension"]

logger = logging.getLogger(__name__)

#: The key of this extension's state in ``app.extensions``.
EXTENSION_KEY = "baseplate_events"

F = TypeVar("F", bound=Filler)


class _State:
    """What ``app.extensions["baseplate_events"]`` holds."""

    __slots__ = ("extension", "runtime")

    def __init__(self, extension: "EventsExtension", runtime: EventsRuntime) -> None:
        self.extension = extension
        self.runtime = runtime

    def __repr__(self) -> str:
        return f"<baseplate_events state {self.runtime!r}>"


class _OutsideRequest:
    """``g.events_v2`` in an app context that is not handling a request."""

    __slots__ = ()

    def put(self, event: Any) -> None:
        if has_request_context():
            # A request context pushed by hand (app.test_request_context()):
            # no request_started signal, so give it its events_v2 now.
            _attach(current_app._get_current_object())  # type: ignore[attr-defined]
            g.events_v2.put(event)
            return
        raise EventError(
            "flask.g.events_v2 is only usable while a request is handled; outside "
            "a request (a CLI command, a background job) use an EventQueue directly"
        )

    def __repr__(self) -> str:
        return "<events_v2 outside a request>"


_OUTSIDE_REQUEST = _OutsideRequest()


class EventsExtension:
    """Give each request of the apps it is initialised for an ``events_v2``.

    ::

        events = EventsExtension()

        def create_app():
            app = Flask(__name__)
            events.init_app(app)
            return app

    One extension may serve several apps; each gets its own settings, queue
    and counters, and all share the extension's fillers.

    :param app: initialise at once; or later with :meth:`init_app`.
    :raises ConfigError: (with ``app``) a config value is invalid.
    """

    def __init__(self, app: Optional[Flask] = None) -> None:
        # Shared by every app this extension is initialised for, so that
        # @events.filler works before and after init_app alike.
        self._fillers: List[Filler] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the ``EVENTS_*`` config of ``app`` and hook into its requests.

        The defaults are written into ``app.config``, and the state into
        ``app.extensions["baseplate_events"]``.

        :param app: the Flask application.
        :raises ConfigError: a config value is invalid; the message names the key.
        :raises EventError: the app already has baseplate_events.
        """
        if EXTENSION_KEY in app.extensions:
            raise EventError(
                f"baseplate_events is already initialised for the Flask app "
                f"{app.import_name!r}; call init_app once per app"
            )
        config = app.config
        for setting in APP_SETTINGS:
            if setting.name not in WORKED_OUT:
                config.setdefault(flask_key(setting.name), setting.default)
        if "EVENTS_SOURCE" not in config:
            config["EVENTS_SOURCE"] = default_source(app.import_name, "EVENTS_SOURCE")
        settings = parse_settings(config, flask_key)
        config.setdefault("EVENTS_SINK", settings.sink)
        runtime = EventsRuntime(settings, self._fillers, flask_key)
        problem = runtime.startup_problem()
        if problem is not None:
            logger.warning("%s", problem)
        app.extensions[EXTENSION_KEY] = _State(self, runtime)

        # request_started comes before every before_request function, so
        # events_v2 is there for other extensions' hooks too.
        request_started.connect(_start_request, app, weak=False)
        appcontext_pushed.connect(_outside_request, app, weak=False)
        if settings.transactional:
            app.after_request(_see_response)
            app.teardown_request(_end_request)

    def filler(self, filler: F) -> F:
        """Decorator: run ``filler(event, request)`` on every event put.

        Fillers run in the order they were registered, before auto-fill, and
        should set only fields that are still None. ``request`` is
        ``flask.request``::

            @events.filler
            def fill_request(event, request):
                if event.request is None:
                    event.request = RequestInfo(user_agent=request.user_agent.string)

        :param filler: ``filler(event, request)``.
        :returns: ``filler`` itself, so that this works as a decorator.
        :raises TypeError: ``filler`` is not callable.
        """
        if not callable(filler):
            raise TypeError(f"an event filler must be callable, got {filler!r}")
        self._fillers.append(filler)
        return filler

    def runtime(self, app: Optional[Flask] = None) -> EventsRuntime:
        """The settings, fillers and queue of ``app`` (default: the current app).

        Its ``failed`` and ``discarded`` counters say how many events the app
        could not put, and how many a failed transactional request dropped.

        :param app: a Flask app this extension was initialised for.
        :raises EventError: this extension was not initialised for ``app``.
        """
        if app is None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = app.extensions.get(EXTENSION_KEY)
        if state is None or state.extension is not self:
            raise EventError(
                f"this EventsExtension was not initialised for the Flask app "
                f"{app.import_name!r}; call init_app(app) first"
            )
        return state.runtime

    def close(self, app: Optional[Flask] = None) -> None:
        """Close ``app``'s process-wide queue descriptor (tests, shutdown).

        The next ``put`` opens it again.

        :param app: as for :meth:`runtime`.
        :raises EventError: this extension was not initialised for ``app``.
        """
        self.runtime(app).close()


def _outside_request(app: Flask, **extra: Any) -> None:
    g.events_v2 = _OUTSIDE_REQUEST


def _start_request(app: Flask, **extra: Any) -> None:
    _attach(app)


def _attach(app: Flask) -> None:
    state: _State = app.extensions[EXTENSION_KEY]
    real_request = request._get_current_object()  # type: ignore[attr-defined]
    events = state.runtime.for_request(real_request)
    g.events_v2 = events
    real_request.events_v2 = events


def _see_response(response: Response) -> Response:
    events = getattr(request, "events_v2", None)
    if isinstance(events, RequestEvents):
        events.status = response.status_code
    return response


def _end_request(exc: Optional[BaseException]) -> None:
    events = getattr(request, "events_v2", None)
    if isinstance(events, RequestEvents):
        # The status is None only in a request context pushed by hand
        # (app.test_request_context()), which has no response to judge.
        status = events.status
        events.finish(exc is None and (status is None or status < 500))
