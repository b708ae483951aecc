"""Flask integration through the real framework: app.test_client(), real queues.

Apps are built both ways, directly (``EventsExtension(app)``) and with an
application factory (``events.init_app(app)``).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Dict, List

import pytest
from flask import Blueprint, Flask, abort, g, request

from baseplate_events import ConfigError, EventError, EventTooLargeError
from baseplate_events.flask import EXTENSION_KEY, EventsExtension
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.runtime.request_events import EventsRuntime
from event_schemas.event.ttypes import Event
from event_schemas.event.ttypes import Request as RequestInfo

from tests.support.apps import Signup, decode, flask_config, flask_runtime

# -- views, on a blueprint every test app registers ----------------------------

site = Blueprint("site", __name__)


@site.route("/put")
def put_view() -> str:
    g.events_v2.put(Event(action="view", noun=request.args.get("noun")))
    return "ok"


@site.route("/signup")
def signup_view() -> str:
    request.events_v2.put(Signup(plan="gold"))  # type: ignore[attr-defined]
    return "ok"


@site.route("/same")
def same_view() -> str:
    return str(g.events_v2 is request.events_v2)  # type: ignore[attr-defined]


@site.route("/big")
def big_view() -> str:
    g.events_v2.put(Event(payload=b"x" * 3000))
    return "ok"


@site.route("/raise")
def raising_view() -> str:
    g.events_v2.put(Event(noun="raised"))
    raise RuntimeError("the transaction rolled back")


@site.route("/abort/<int:status>")
def aborting_view(status: int) -> str:
    g.events_v2.put(Event(noun="aborted"))
    abort(status)


def fill_user_agent(event: Any, request: Any) -> None:
    event.request = RequestInfo(user_agent=request.headers.get("User-Agent"))


# -- building apps -------------------------------------------------------------


def create_app(events: EventsExtension, config: Dict[str, Any]) -> Flask:
    """An application factory, as a Flask project writes one."""
    app = Flask(__name__)
    app.config.update(config)
    events.init_app(app)
    app.register_blueprint(site)
    return app


def build_direct(config: Dict[str, Any]) -> Flask:
    """The direct style: the extension is given the app at construction."""
    app = Flask(__name__)
    app.config.update(config)
    EventsExtension(app)
    app.register_blueprint(site)
    return app


def build_factory(config: Dict[str, Any]) -> Flask:
    return create_app(EventsExtension(), config)


@pytest.fixture
def test_config(queue_name: str) -> Dict[str, Any]:
    """Config for the test queue, within stock kernel limits."""
    return flask_config(queue_name, EVENTS_SOURCE="svc")


@pytest.fixture(params=["direct", "factory"])
def make_app(
    request: pytest.FixtureRequest, test_config: Dict[str, Any], runtimes: List[EventsRuntime]
) -> Callable[..., Flask]:
    """Build an app on the test queue, directly or through a factory."""
    build = build_direct if request.param == "direct" else build_factory

    def factory(**config: Any) -> Flask:
        app = build({**test_config, **config})
        runtimes.append(flask_runtime(app))
        return app

    return factory


# -- setting up ----------------------------------------------------------------


def test_put_reaches_the_queue_auto_filled(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A view's put reaches the queue with source, client_timestamp and uuid filled."""
    make_app().test_client().get("/put?noun=page")
    received = decode(small_reader.get(timeout=0))
    assert ("svc", "view", "page") == (received.source, received.action, received.noun)
    assert (True, 4) == (
        isinstance(received.client_timestamp, int),
        uuid.UUID(received.uuid).version,
    )


def test_g_and_request_share_events_v2(make_app: Callable[..., Flask]) -> None:
    """``flask.g.events_v2`` and ``flask.request.events_v2`` are one object."""
    assert b"True" == make_app().test_client().get("/same").data


def test_autofill_on_an_unseen_schema(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A struct without a source field gets its client_timestamp and uuid, nothing else."""
    make_app().test_client().get("/signup")
    received = decode(small_reader.get(timeout=0), Signup())
    assert ("gold", True) == (received.plan, isinstance(received.client_timestamp, int))
    assert 4 == uuid.UUID(received.uuid).version


def test_autofill_false_sends_the_event_as_built(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """EVENTS_AUTOFILL = False turns auto-fill off."""
    make_app(EVENTS_AUTOFILL=False).test_client().get("/put?noun=page")
    assert Event(action="view", noun="page") == decode(small_reader.get(timeout=0))


def test_view_on_the_app_itself(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A route on the app, outside any blueprint, has events_v2 too."""
    app = make_app()

    @app.route("/direct")
    def direct() -> str:
        g.events_v2.put(Event(noun="direct"))
        return "ok"

    app.test_client().get("/direct")
    assert "direct" == decode(small_reader.get(timeout=0)).noun


def test_before_request_hook_can_put(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """events_v2 exists before any before_request function runs."""
    app = make_app()

    @app.before_request
    def record_visit() -> None:
        g.events_v2.put(Event(noun="visit"))

    app.test_client().get("/same")
    assert "visit" == decode(small_reader.get(timeout=0)).noun


def test_source_defaults_to_the_import_name(
    test_config: Dict[str, Any], runtimes: List[EventsRuntime], small_reader: MessageQueue
) -> None:
    """Without EVENTS_SOURCE, source is the app's import name."""
    del test_config["EVENTS_SOURCE"]
    app = Flask("shop.web")
    app.config.update(test_config)
    EventsExtension(app)
    app.register_blueprint(site)
    runtimes.append(flask_runtime(app))
    app.test_client().get("/put")
    assert "shop.web" == decode(small_reader.get(timeout=0)).source


def test_defaults_are_set_in_app_config() -> None:
    """init_app writes every key's default into app.config."""
    app = Flask("shop.web")
    EventsExtension(app)
    expected = {
        "EVENTS_QUEUE_NAME": "v2",
        "EVENTS_SOURCE": "shop.web",
        "EVENTS_AUTOFILL": True,
        "EVENTS_MAX_MESSAGES": 10000,
        "EVENTS_MAX_MESSAGE_SIZE": 102400,
        "EVENTS_PUT_TIMEOUT": 0.0,
        "EVENTS_ERRORS": "raise",
        "EVENTS_TRANSACTIONAL": False,
    }
    assert expected == {key: app.config[key] for key in expected}


def test_bad_config_fails_at_init_app() -> None:
    """An invalid config value stops init_app, naming the key."""
    app = Flask(__name__)
    app.config["EVENTS_MAX_MESSAGES"] = "lots"
    with pytest.raises(ConfigError) as caught:
        EventsExtension().init_app(app)
    assert "EVENTS_MAX_MESSAGES: expected an integer, got 'lots'" == str(caught.value)


def test_init_app_twice_is_refused() -> None:
    """Initialising an app a second time is an error, not a second set of hooks."""
    app = Flask("shop.web")
    events = EventsExtension(app)
    with pytest.raises(EventError) as caught:
        events.init_app(app)
    expected = (
        "baseplate_events is already initialised for the Flask app 'shop.web'; "
        "call init_app once per app"
    )
    assert expected == str(caught.value)


def test_extension_used_on_another_app_is_refused() -> None:
    """Asking an extension about an app it was not initialised for is a clear error."""
    EventsExtension(Flask("shop.web"))
    other = Flask("shop.admin")
    with pytest.raises(EventError) as caught:
        EventsExtension(Flask("shop.api")).runtime(other)
    expected = (
        "this EventsExtension was not initialised for the Flask app 'shop.admin'; "
        "call init_app(app) first"
    )
    assert expected == str(caught.value)


def test_outside_a_request_is_a_clear_error() -> None:
    """In an app context without a request, put raises EventError, not AttributeError."""
    app = Flask(__name__)
    EventsExtension(app)
    with app.app_context(), pytest.raises(EventError) as caught:
        g.events_v2.put(Event())
    expected = (
        "flask.g.events_v2 is only usable while a request is handled; outside a request "
        "(a CLI command, a background job) use an EventQueue directly"
    )
    assert expected == str(caught.value)


# -- fillers -------------------------------------------------------------------


def test_filler_registered_before_init_app(
    test_config: Dict[str, Any], runtimes: List[EventsRuntime], small_reader: MessageQueue
) -> None:
    """``@events.filler`` on a module-level extension works with a factory."""
    events = EventsExtension()
    events.filler(fill_user_agent)
    app = create_app(events, test_config)
    runtimes.append(flask_runtime(app))
    app.test_client().get("/put", headers={"User-Agent": "curl/8.5"})
    assert "curl/8.5" == decode(small_reader.get(timeout=0)).request.user_agent


def test_filler_decorator_after_init_app(
    test_config: Dict[str, Any], runtimes: List[EventsRuntime], small_reader: MessageQueue
) -> None:
    """A filler added after init_app runs too, and the decorator returns the function."""
    app = Flask(__name__)
    app.config.update(test_config)
    events = EventsExtension(app)
    app.register_blueprint(site)
    runtimes.append(flask_runtime(app))

    @events.filler
    def fill_domain(event: Any, request: Any) -> None:
        event.request = RequestInfo(domain=request.host)

    app.test_client().get("/put")
    received = decode(small_reader.get(timeout=0))
    assert ("localhost", "fill_domain") == (received.request.domain, fill_domain.__name__)


# -- error policy --------------------------------------------------------------


def test_raise_policy_raises_into_the_view(make_app: Callable[..., Flask]) -> None:
    """Under ``raise`` a failed put raises in the view."""
    app = make_app()
    app.testing = True
    with pytest.raises(EventTooLargeError):
        app.test_client().get("/big")


def test_log_policy_lets_the_request_carry_on(make_app: Callable[..., Flask]) -> None:
    """Under ``log`` a failed put is counted and the view still answers."""
    app = make_app(EVENTS_ERRORS="log")
    response = app.test_client().get("/big")
    assert (b"ok", 1) == (response.data, app.extensions[EXTENSION_KEY].runtime.failed)


# -- transactional mode --------------------------------------------------------


def test_transactional_success_sends(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A request that succeeds sends its held events at teardown."""
    make_app(EVENTS_TRANSACTIONAL=True).test_client().get("/put?noun=kept")
    assert "kept" == decode(small_reader.get(timeout=0)).noun


def test_transactional_exception_drops(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A view that raises (answered with a 500) sends nothing."""
    app = make_app(EVENTS_TRANSACTIONAL=True)
    assert 500 == app.test_client().get("/raise").status_code
    assert (0, 1) == (small_reader.depth, app.extensions[EXTENSION_KEY].runtime.discarded)


def test_transactional_propagated_exception_drops(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """With exceptions propagating (app.testing), a raising view sends nothing."""
    app = make_app(EVENTS_TRANSACTIONAL=True)
    app.testing = True
    with pytest.raises(RuntimeError):
        app.test_client().get("/raise")
    assert 0 == small_reader.depth


def test_transactional_abort_500_drops(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A view that aborts with 500 sends nothing."""
    make_app(EVENTS_TRANSACTIONAL=True).test_client().get("/abort/500")
    assert 0 == small_reader.depth


def test_transactional_abort_404_sends(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A 4xx answer is not a failure of the server: its events are sent."""
    make_app(EVENTS_TRANSACTIONAL=True).test_client().get("/abort/404")
    assert "aborted" == decode(small_reader.get(timeout=0)).noun


def test_init_app_warns_when_the_queue_cannot_be_created(
    queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Config the kernel refuses for a missing queue is reported by init_app."""
    app = Flask(__name__)
    app.config.update(EVENTS_QUEUE_NAME=queue_name, EVENTS_MAX_MESSAGE_SIZE=1048576)
    EventsExtension(app)
    assert [("baseplate_events.integrations.flask", logging.WARNING)] == [
        (record.name, record.levelno) for record in caplog.records
    ]


def test_test_request_context_can_put(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """In a request context pushed by hand, put works as in a request."""
    app = make_app()
    with app.test_request_context("/anything"):
        g.events_v2.put(Event(noun="by hand"))
        same = g.events_v2 is request.events_v2  # type: ignore[attr-defined]
    assert (True, "by hand") == (same, decode(small_reader.get(timeout=0)).noun)


def test_test_request_context_transactional_sends_at_pop(
    make_app: Callable[..., Flask], small_reader: MessageQueue
) -> None:
    """A hand-pushed transactional request context sends its events when it is popped."""
    app = make_app(EVENTS_TRANSACTIONAL=True)
    with app.test_request_context("/anything"):
        g.events_v2.put(Event(noun="by hand"))
        held = small_reader.depth
    assert (0, "by hand") == (held, decode(small_reader.get(timeout=0)).noun)
