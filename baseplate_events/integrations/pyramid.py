"""Pyramid: ``config.include("baseplate_events.pyramid")``; each request has ``events_v2``.

``request.events_v2.put(event)`` completes a Thrift event and puts it on one
process-wide queue (v2 serializer), see :mod:`baseplate_events.runtime.request_events`.

Settings, all optional, read once at include time (a bad value raises
:class:`~baseplate_events.ConfigError` naming the key): ``events.<name>`` for
each setting of :data:`baseplate_events.runtime.settings.APP_SETTINGS`.

More fields can be filled from the request with
``config.add_event_filler(filler)``, ``filler(event, request)``.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Union

from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import EXCVIEW

from ..runtime.request_events import EventsRuntime, Filler, RequestEvents
from ..runtime.settings import default_source, parse_settings, pyramid_key

__all__ = ["REGISTRY_KEY", "add_event_filler", "events_tween_factory", "includeme"]

logger = logging.getLogger(__name__)

#: Where the integration keeps its
#: :class:`~baseplate_events.runtime.request_events.EventsRuntime`: ``registry[REGISTRY_KEY]``.
REGISTRY_KEY = "baseplate_events"

Handler = Callable[[Request], Response]


def includeme(config: Configurator) -> None:
    """Parse the ``events.`` settings and give every request ``events_v2``.

    Called by ``config.include("baseplate_events.pyramid")``; it also adds the
    :func:`add_event_filler` directive and, in transactional mode, the tween::

        with Configurator(settings={"events.queue_name": "v2"}) as config:
            config.include("baseplate_events.pyramid")

    :param config: the application's configurator.
    :raises ConfigError: a setting is invalid; the message names it.
    """
    root = config.root_package
    settings = parse_settings(
        config.get_settings(),
        pyramid_key,
        default_source=(
            default_source(root.__name__, pyramid_key("source")) if root is not None else None
        ),
    )
    runtime = EventsRuntime(settings, key=pyramid_key)
    problem = runtime.startup_problem()
    if problem is not None:
        logger.warning("%s", problem)
    config.registry[REGISTRY_KEY] = runtime
    config.add_request_method(_events_v2, "events_v2", reify=True)
    config.add_directive("add_event_filler", add_event_filler)
    # Over the exception view tween, so that an exception an exception view
    # turns into a response is judged by that response's status, as Flask
    # does; and over pyramid_tm when it is there, so that held events go out
    # only after the transaction committed (a failed commit drops them).
    config.add_tween(
        "baseplate_events.integrations.pyramid.events_tween_factory",
        over=("pyramid_tm.tm_tween_factory", EXCVIEW),
    )


def add_event_filler(config: Configurator, filler: Union[Filler, str]) -> None:
    """Config directive: run ``filler(event, request)`` on every event put.

    Fillers run in the order they were added, before auto-fill, and should set
    only fields that are still None. ``filler`` may be a dotted name::

        def fill_request(event, request):
            if event.request is None:
                event.request = RequestInfo(user_agent=request.user_agent)

        config.add_event_filler(fill_request)
        config.add_event_filler("myapp.events.fill_request")

    :param config: the configurator (the directive's ``self``).
    :param filler: ``filler(event, request)``, or its dotted name.
    :raises pyramid.exceptions.ConfigurationError: ``filler`` is not callable.
    """
    resolved = config.maybe_dotted(filler)
    if not callable(resolved):
        raise ConfigurationError(f"add_event_filler: expected a callable, got {filler!r}")

    def register() -> None:
        config.registry[REGISTRY_KEY].add_filler(resolved)

    introspectable = config.introspectable(
        "event fillers", id(resolved), config.object_description(resolved), "event filler"
    )
    introspectable["filler"] = resolved
    config.action(None, register, introspectables=(introspectable,))


def events_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """The tween that ends each request's transactional window.

    Without ``events.transactional`` there is nothing to do at the end of a
    request, so the handler is returned as it is and costs nothing. With it,
    the request's events are held and sent when the handler returns a
    response below 500, or dropped (and counted) when it raises or answers
    500 or more.

    :param handler: the next handler down Pyramid's tween chain.
    :param registry: the application registry holding the runtime.
    """
    runtime: EventsRuntime = registry[REGISTRY_KEY]
    if not runtime.settings.transactional:
        return handler

    def events_tween(request: Request) -> Response:
        # Made here, not on first use, so that only requests this tween will
        # finish hold their events: one first used by a response callback, or
        # by a script's request (pyramid.scripting.prepare), sends at once.
        events = runtime.for_request(request, hold=True)
        request.events_v2 = events
        try:
            response = handler(request)
        except BaseException:
            events.finish(succeeded=False)
            raise
        events.finish(succeeded=response.status_code < 500)
        return response

    return events_tween


def _events_v2(request: Request) -> RequestEvents:
    # Reached only outside the tween's window (see events_tween): never holds.
    runtime: Any = request.registry[REGISTRY_KEY]
    return runtime.for_request(request, hold=False)
