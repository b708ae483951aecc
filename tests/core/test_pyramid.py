"""Pyramid integration through the real framework: Configurator, WebTest, real queues."""
from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.httpexceptions import HTTPFound
from pyramid.interfaces import ITweens
from pyramid.paster import get_app
from pyramid.request import Request
from pyramid.response import Response
from pyramid.scripting import prepare
from pyramid.tweens import EXCVIEW
from webtest import TestApp

from baseplate_events import ConfigError, EventTooLargeError
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.pyramid import REGISTRY_KEY
from baseplate_events.runtime.request_events import EventsRuntime
from event_schemas.event.ttypes import Event
from event_schemas.event.ttypes import Request as RequestInfo

from tests.support.apps import Signup, add_routes, decode, pyramid_settings, pyramid_test_app

class Boom(Exception):
    """What the failing view raises."""


# -- views ---------------------------------------------------------------------


def put_view(request: Request) -> Response:
    request.events_v2.put(Event(action="view", noun=request.params.get("noun")))
    return Response("ok")


def signup_view(request: Request) -> Response:
    request.events_v2.put(Signup(plan="gold"))
    return Response("ok")


def big_view(request: Request) -> Response:
    request.events_v2.put(Event(payload=b"x" * 3000))
    return Response("ok")


def reified_view(request: Request) -> Response:
    return Response(str(request.events_v2 is request.events_v2))


def raising_view(request: Request) -> Response:
    request.events_v2.put(Event(noun="raised"))
    raise Boom("the transaction rolled back")


def error_view(request: Request) -> Response:
    request.events_v2.put(Event(noun="errored"))
    return Response("broken", status=500)


def redirect_view(request: Request) -> Response:
    request.events_v2.put(Event(noun="redirected"))
    raise HTTPFound(location="/done")


def boom_exception_view(exc: Boom, request: Request) -> Response:
    return Response("sorry", status=500)


def fill_user_agent(event: Any, request: Request) -> None:
    """A filler found by dotted name."""
    event.request = RequestInfo(user_agent=request.user_agent)


VIEWS: Dict[str, Callable[[Request], Response]] = {
    "/put": put_view,
    "/signup": signup_view,
    "/big": big_view,
    "/reified": reified_view,
    "/raise": raising_view,
    "/error": error_view,
    "/redirect": redirect_view,
}


def add_views(config: Configurator) -> None:
    add_routes(config, VIEWS)


def ini_app_factory(global_config: Dict[str, str], **settings: str) -> Any:
    """The WSGI app of the INI file test: no include in code, only ``pyramid.includes``."""
    config = Configurator(settings=settings)
    add_views(config)
    return config.make_wsgi_app()


# -- fixtures ------------------------------------------------------------------


@pytest.fixture
def make_app(queue_name: str, runtimes: List[EventsRuntime]) -> Callable[..., TestApp]:
    """Build a Pyramid app that includes baseplate_events, on the test queue."""

    def factory(
        setup: Optional[Callable[[Configurator], None]] = None, **settings: str
    ) -> TestApp:
        settings = pyramid_settings(queue_name, **{"events.source": "svc", **settings})
        return pyramid_test_app(settings, VIEWS, runtimes, setup)

    return factory


# -- including and settings ----------------------------------------------------


def test_include_gives_every_request_events_v2(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """``config.include`` and a view's put reaches the queue, auto-filled."""
    make_app().get("/put", {"noun": "page"})
    received = decode(small_reader.get(timeout=0))
    assert ("svc", "view", "page") == (received.source, received.action, received.noun)
    assert 4 == uuid.UUID(received.uuid).version
    assert isinstance(received.client_timestamp, int)


def test_pyramid_includes_in_an_ini_file(
    tmp_path: Path, queue_name: str, small_reader: MessageQueue, runtimes: List[EventsRuntime]
) -> None:
    """``pyramid.includes = baseplate_events.pyramid`` in an INI file works too."""
    ini = tmp_path / "app.ini"
    ini.write_text(
        "[app:main]\n"
        "use = call:tests.core.test_pyramid:ini_app_factory\n"
        "pyramid.includes = baseplate_events.pyramid\n"
        f"events.queue_name = {queue_name}\n"
        "events.max_messages = 10\n"
        "events.max_message_size = 2048\n"
        "events.source = from-ini\n"
    )
    wsgi = get_app(str(ini))
    runtimes.append(wsgi.registry[REGISTRY_KEY])
    TestApp(wsgi).get("/put")
    assert "from-ini" == decode(small_reader.get(timeout=0)).source


def test_events_v2_is_reified(make_app: Callable[..., TestApp]) -> None:
    """A request has one events_v2, made on first use."""
    assert "True" == make_app().get("/reified").text


def test_source_defaults_to_the_root_package(
    queue_name: str, small_reader: MessageQueue, runtimes: List[EventsRuntime]
) -> None:
    """Without events.source, source is the application's root package name."""
    config = Configurator(settings={"events.queue_name": queue_name})
    config.include("baseplate_events.pyramid")
    add_views(config)
    wsgi = config.make_wsgi_app()
    runtimes.append(wsgi.registry[REGISTRY_KEY])
    TestApp(wsgi).get("/put")
    assert "tests.core" == decode(small_reader.get(timeout=0)).source


def test_autofill_false_sends_the_event_as_built(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """events.autofill = false turns auto-fill off."""
    make_app(**{"events.autofill": "false"}).get("/put", {"noun": "page"})
    assert Event(action="view", noun="page") == decode(small_reader.get(timeout=0))


def test_autofill_on_an_unseen_schema(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """A struct without a source field gets its client_timestamp and uuid, nothing else."""
    make_app().get("/signup")
    received = decode(small_reader.get(timeout=0), Signup())
    assert ("gold", True) == (received.plan, isinstance(received.client_timestamp, int))
    assert 4 == uuid.UUID(received.uuid).version


def test_bad_setting_fails_at_include() -> None:
    """An invalid setting stops the application at include time, naming the key."""
    config = Configurator(settings={"events.max_messages": "lots"})
    with pytest.raises(ConfigError) as caught:
        config.include("baseplate_events.pyramid")
    assert "events.max_messages: expected an integer, got 'lots'" == str(caught.value)


def test_tween_sits_over_the_exception_view_tween(make_app: Callable[..., TestApp]) -> None:
    """The events tween is closer to the ingress than the exception view tween."""
    registry = make_app().app.registry
    names = [name for name, _ in registry.queryUtility(ITweens).implicit()]
    expected = ["baseplate_events.integrations.pyramid.events_tween_factory", EXCVIEW]
    assert expected == names


# -- fillers -------------------------------------------------------------------


def test_add_event_filler_completes_events(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """``config.add_event_filler`` fills fields from the request."""

    def setup(config: Configurator) -> None:
        config.add_event_filler(fill_user_agent)

    make_app(setup).get("/put", headers={"User-Agent": "curl/8.5"})
    assert "curl/8.5" == decode(small_reader.get(timeout=0)).request.user_agent


def test_add_event_filler_takes_a_dotted_name(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """A filler can be named by its dotted name, as in an INI file."""

    def setup(config: Configurator) -> None:
        config.add_event_filler("tests.core.test_pyramid.fill_user_agent")

    make_app(setup).get("/put", headers={"User-Agent": "curl/8.5"})
    assert "curl/8.5" == decode(small_reader.get(timeout=0)).request.user_agent


def test_add_event_filler_refuses_a_non_callable(make_app: Callable[..., TestApp]) -> None:
    """A filler that cannot be called is a configuration error."""

    def setup(config: Configurator) -> None:
        config.add_event_filler(42)

    with pytest.raises(ConfigurationError) as caught:
        make_app(setup)
    assert "add_event_filler: expected a callable, got 42" == str(caught.value)


# -- error policy --------------------------------------------------------------


def test_raise_policy_raises_into_the_view(make_app: Callable[..., TestApp]) -> None:
    """Under ``raise`` a failed put raises in the view."""
    with pytest.raises(EventTooLargeError):
        make_app().get("/big")


def test_log_policy_lets_the_request_carry_on(make_app: Callable[..., TestApp]) -> None:
    """Under ``log`` a failed put is counted and the view still answers."""
    app = make_app(**{"events.errors": "log"})
    response = app.get("/big")
    assert ("ok", 1) == (response.text, app.app.registry[REGISTRY_KEY].failed)


# -- transactional mode --------------------------------------------------------


def test_transactional_success_sends(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """A request that succeeds sends its held events."""
    make_app(**{"events.transactional": "true"}).get("/put", {"noun": "kept"})
    assert "kept" == decode(small_reader.get(timeout=0)).noun


def test_transactional_exception_drops(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """A view that raises sends nothing."""
    app = make_app(**{"events.transactional": "true"})
    with pytest.raises(Boom):
        app.get("/raise")
    assert (0, 1) == (small_reader.depth, app.app.registry[REGISTRY_KEY].discarded)


def test_transactional_500_response_drops(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """A view that returns a 500 sends nothing."""
    make_app(**{"events.transactional": "true"}).get("/error", status=500)
    assert 0 == small_reader.depth


def test_transactional_exception_view_500_drops(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """An exception that an exception view renders as a 500 sends nothing."""

    def setup(config: Configurator) -> None:
        config.add_exception_view(boom_exception_view, context=Boom)

    make_app(setup, **{"events.transactional": "true"}).get("/raise", status=500)
    assert 0 == small_reader.depth


def test_transactional_raised_redirect_sends(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """A raised HTTPFound is a successful request: its events are sent."""
    make_app(**{"events.transactional": "true"}).get("/redirect", status=302)
    assert "redirected" == decode(small_reader.get(timeout=0)).noun


def test_transactional_put_after_the_tween_is_sent(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """An event first put from a response callback, after the window closed, is sent."""

    def callback_view(request: Request) -> Response:
        request.add_response_callback(
            lambda request, response: request.events_v2.put(Event(noun="callback"))
        )
        return Response("ok")

    def setup(config: Configurator) -> None:
        config.add_route("callback", "/callback")
        config.add_view(callback_view, route_name="callback")

    make_app(setup, **{"events.transactional": "true"}).get("/callback")
    assert "callback" == decode(small_reader.get(timeout=0)).noun


def test_include_warns_when_the_queue_cannot_be_created(
    queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Settings the kernel refuses for a missing queue are reported at include time."""
    config = Configurator(
        settings={"events.queue_name": queue_name, "events.max_message_size": "1048576"}
    )
    config.include("baseplate_events.pyramid")
    assert [("baseplate_events.integrations.pyramid", logging.WARNING)] == [
        (record.name, record.levelno) for record in caplog.records
    ]


def test_transactional_script_request_sends_at_once(
    make_app: Callable[..., TestApp], small_reader: MessageQueue
) -> None:
    """A request made by a script (pyramid.scripting.prepare) has no tween: it sends at once."""
    registry = make_app(**{"events.transactional": "true"}).app.registry
    env = prepare(registry=registry)
    try:
        env["request"].events_v2.put(Event(noun="script"))
    finally:
        env["closer"]()
    assert "script" == decode(small_reader.get(timeout=0)).noun
