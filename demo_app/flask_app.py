"""The demo's Flask app: a small forum whose views record v2 events, and one legacy v1 event.

Set up as the README tells a Flask developer to: ``EventsExtension(app)`` and
``EVENTS_*`` config keys; views call ``flask.g.events_v2.put(event)`` and let
the extension auto-fill ``source``, ``client_timestamp`` and ``uuid``.

``POST /signup`` records a legacy schemaless event (``baseplate_events.Event``)
on a second queue, the way a service that predates the v2 pipeline does: a
plain :class:`~baseplate_events.EventQueue` with the default (v1) serializer,
opened once per process on first use so that a forking server does not share
a descriptor made before the fork.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Tuple

import flask

from baseplate_events import Event as LegacyEvent
from baseplate_events import EventQueue, EventQueueFullError, FieldKind
from baseplate_events.flask import EventsExtension

from .event_schemas.event.ttypes import Event, User
from .event_schemas.event.ttypes import Request as RequestInfo

SOURCE = "demo-forum"

forum = flask.Blueprint("forum", __name__)


def _user() -> User:
    user_id = flask.request.headers.get("X-User-Id")
    return User(user_id=user_id, logged_in=user_id is not None,
                features={"new_editor"} if user_id and user_id.endswith("7") else set())


def _request_info(status: int = 200) -> RequestInfo:
    request = flask.request
    return RequestInfo(user_agent=request.user_agent.string, domain=request.host.split(":")[0],
                       ip=request.remote_addr, base_url=request.path, status_code=status)


def _put(event: Event) -> Dict[str, Any]:
    """Put one v2 event and say which, for the JSON answer."""
    flask.g.events_v2.put(event)
    return {"uuid": event.uuid, "queue": "v2", "source": SOURCE, "action": event.action}


@forum.post("/posts")
def submit_post() -> Tuple[Dict[str, Any], int]:
    body = flask.request.get_json(force=True)
    community = str(body.get("community", "general"))
    event = Event(action="submit", noun="post", user=_user(), request=_request_info(201),
                  tags={"community": community},
                  measurements={"title_length": float(len(str(body.get("title", ""))))})
    return {"post": {"community": community}, "events": [_put(event)]}, 201


@forum.get("/posts/<int:post_id>")
def view_post(post_id: int) -> Dict[str, Any]:
    event = Event(action="view", noun="post", user=_user(), request=_request_info(),
                  tags={"post_id": str(post_id)})
    return {"post": {"id": post_id}, "events": [_put(event)]}


@forum.post("/posts/<int:post_id>/vote")
def vote(post_id: int) -> Dict[str, Any]:
    direction = 1.0 if flask.request.get_json(force=True).get("direction", 1) >= 0 else -1.0
    event = Event(action="vote", noun="post", user=_user(), request=_request_info(),
                  value=direction, tags={"post_id": str(post_id)})
    return {"voted": direction, "events": [_put(event)]}


@forum.post("/signup")
def signup() -> Tuple[Dict[str, Any], int]:
    """Record a legacy v1 event on the second queue."""
    body = flask.request.get_json(force=True)
    event = LegacyEvent("account", "signup")
    event.set_field("plan", body.get("plan", "free"))
    event.set_field("newsletter", bool(body.get("newsletter", False)))
    event.set_field("email", body.get("email"), kind=FieldKind.OBFUSCATED)
    event.set_field("referrer", flask.request.referrer, kind=FieldKind.HIGH_CARDINALITY)
    legacy_queue(flask.current_app).put(event)
    entry = {"uuid": str(event.id), "queue": "v1", "source": event.topic,
             "action": event.event_type}
    return {"signed_up": True, "events": [entry]}, 201


def legacy_queue(app: flask.Flask) -> EventQueue[LegacyEvent]:
    """The process-wide v1 queue, opened on first use (after any fork)."""
    state = app.extensions["demo_legacy_queue"]
    with state["lock"]:
        if state["queue"] is None:
            state["queue"] = EventQueue(
                app.config["DEMO_V1_QUEUE_NAME"],
                max_messages=app.config["EVENTS_MAX_MESSAGES"],
                max_message_size=app.config["EVENTS_MAX_MESSAGE_SIZE"],
                put_timeout=app.config["EVENTS_PUT_TIMEOUT"],
            )
        queue: EventQueue[LegacyEvent] = state["queue"]
        return queue


def queue_full(exc: EventQueueFullError) -> Tuple[Dict[str, Any], int, Dict[str, str]]:
    """A full queue means the publisher is behind: tell the client to retry shortly."""
    return {"error": str(exc)}, 503, {"Retry-After": "1"}


def make_app(
    queue_name: str,
    v1_queue_name: str,
    *,
    max_messages: int = 10,
    max_message_size: int = 8192,
    put_timeout: float = 0.5,
    extra_config: Optional[Dict[str, Any]] = None,
) -> flask.Flask:
    """Build the forum app.

    v2 events go to ``/events-<queue_name>``, legacy v1 ones to ``/events-<v1_queue_name>``.
    """
    app = flask.Flask(__name__)
    app.config.update(
        EVENTS_QUEUE_NAME=queue_name,
        EVENTS_SOURCE=SOURCE,
        EVENTS_MAX_MESSAGES=max_messages,
        EVENTS_MAX_MESSAGE_SIZE=max_message_size,
        # A burst may briefly fill a 10-message queue; wait a little for the
        # publisher to make room rather than fail the put at once.
        EVENTS_PUT_TIMEOUT=put_timeout,
        EVENTS_ERRORS="raise",
        DEMO_V1_QUEUE_NAME=v1_queue_name,
    )
    app.config.update(extra_config or {})
    EventsExtension(app)
    app.extensions["demo_legacy_queue"] = {"lock": threading.Lock(), "queue": None}
    app.register_blueprint(forum)
    app.register_error_handler(EventQueueFullError, queue_full)
    return app


def close_legacy_queue(app: flask.Flask) -> None:
    """Close this process's descriptor of the v1 queue, if it was opened."""
    state = app.extensions["demo_legacy_queue"]
    with state["lock"]:
        if state["queue"] is not None:
            state["queue"].close()
            state["queue"] = None
