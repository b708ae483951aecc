"""When the apps' queue cannot be had.

A stock kernel refuses the default 10000 x 102400 queue: the messages name the
setting to change where the app is configured, and a view that puts an event
follows the error policy instead of failing because of it. A spent
``ulimit -q`` budget is told apart from the sysctl limits. Transactional
requests hold a bounded number of events. ``events.queue_mode`` reaches the
queue.
"""
from __future__ import annotations

import errno
import logging
import os
import resource
from typing import Any, Callable, Dict, Iterator, List

import pytest
from flask import Flask, g
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from baseplate_events import ConfigError, QueueLimitError
from baseplate_events.mqueue import limits as queue_limits
from baseplate_events.errors import TooManyHeldEventsError
from baseplate_events.flask import EXTENSION_KEY
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.pyramid import REGISTRY_KEY
from baseplate_events.mqueue.limits import budget_message, kernel_limits, queue_bytes
from baseplate_events.runtime.request_events import EventsRuntime
from baseplate_events.runtime.settings import flask_key, parse_settings, pyramid_key
from event_schemas.event.ttypes import Event

from tests.conftest import unique_queue_name
from tests.support.apps import flask_test_app, pyramid_test_app
from tests.support.users import mqueue_mount, needs_root, run_as, squat, throwaway_uid

stock_kernel = pytest.mark.skipif(
    (kernel_limits()["msg_max"] or 0) >= 10000,
    reason="this kernel allows the default 10000-message queue",
)


def put_view(request: Request) -> Response:
    request.events_v2.put(Event(action="buy", noun="hat"))
    return Response("ok")


def three_view(request: Request) -> Response:
    for noun in ("a", "b", "c"):
        request.events_v2.put(Event(noun=noun))
    return Response("ok")


def flask_three() -> str:
    for noun in ("a", "b", "c"):
        g.events_v2.put(Event(noun=noun))
    return "ok"


@pytest.fixture
def pyramid_app(queue_name: str, runtimes: List[EventsRuntime]) -> Callable[..., TestApp]:
    """A Pyramid app on the test queue; ``settings`` override the small test sizes."""

    def factory(**settings: str) -> TestApp:
        base = {"events.queue_name": queue_name, "events.source": "shop"}
        views = {"/put": put_view, "/three": three_view}
        return pyramid_test_app({**base, **settings}, views, runtimes)

    return factory


@pytest.fixture
def flask_app(queue_name: str, runtimes: List[EventsRuntime]) -> Callable[..., Flask]:
    """A Flask app on the test queue."""

    def factory(**config: Any) -> Flask:
        base = {"EVENTS_QUEUE_NAME": queue_name}
        return flask_test_app(__name__, {**base, **config}, {"/three": flask_three}, runtimes)

    return factory


def messages_of(caplog: pytest.LogCaptureFixture, logger: str) -> List[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


@pytest.fixture
def mqueue_dir() -> Iterator[str]:
    """Where the queue file system is mounted for the test (mounted for it if need be)."""
    with mqueue_mount() as directory:
        yield directory


SMALLER_PYRAMID = "ask for a smaller queue with events.max_messages and events.max_message_size"
SMALLER_FLASK = "ask for a smaller queue with EVENTS_MAX_MESSAGES and EVENTS_MAX_MESSAGE_SIZE"


# -- a stock kernel and the default sizes ----------------------------------------


@stock_kernel
def test_pyramid_default_sizes_fail_naming_pyramid_settings(
    pyramid_app: Callable[..., TestApp],
) -> None:
    """Under the raise policy the view sees QueueLimitError naming events.max_messages."""
    app = pyramid_app()
    with pytest.raises(QueueLimitError) as info:
        app.get("/put")
    assert (True, True) == (
        SMALLER_PYRAMID in str(info.value),
        "sysctl -w fs.mqueue.msg_max=10000" in str(info.value)
        or "LimitMSGQUEUE=infinity" in str(info.value),
    )


@stock_kernel
def test_pyramid_view_answers_200_when_the_queue_cannot_be_opened_under_log(
    pyramid_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    """Under the log policy the view answers 200; the loss is logged and counted."""
    with caplog.at_level(logging.WARNING, logger="baseplate_events.request_queue"):
        app = pyramid_app(**{"events.errors": "log"})
        response = app.get("/put")
    [message] = messages_of(caplog, "baseplate_events.request_queue")
    assert ("ok", 1, True, True) == (
        response.text,
        app.app.registry[REGISTRY_KEY].failed,
        message.startswith("event not sent (QueueLimitError): "),
        SMALLER_PYRAMID in message,
    )


@stock_kernel
def test_pyramid_start_up_warning_names_the_sysctls_and_settings(
    pyramid_app: Callable[..., TestApp], caplog: pytest.LogCaptureFixture, queue_name: str
) -> None:
    """include warns, before any request, with the sysctl fixes and the settings."""
    with caplog.at_level(logging.WARNING):
        pyramid_app()
    limits = kernel_limits()
    expected = (
        f"/events-{queue_name} does not exist yet and 10000 messages of 102400 bytes exceed "
        f"this machine's limits (fs.mqueue.msg_max={limits['msg_max']}, "
        f"fs.mqueue.msgsize_max={limits['msgsize_max']}): puts will fail with "
        "QueueLimitError until the publisher creates the queue, the limits are raised "
        "(`sysctl -w fs.mqueue.msg_max=10000` and `sysctl -w fs.mqueue.msgsize_max=102400` "
        "as root), or the queue is configured smaller with events.max_messages and "
        "events.max_message_size"
    )
    assert [expected] == caplog.messages


@stock_kernel
def test_flask_default_sizes_fail_naming_flask_settings(
    flask_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Flask under the log policy: 200, and the message names EVENTS_MAX_MESSAGES."""
    with caplog.at_level(logging.WARNING, logger="baseplate_events.request_queue"):
        app = flask_app(EVENTS_ERRORS="log")
        response = app.test_client().get("/three")
    assert (200, 3, True) == (
        response.status_code,
        app.extensions[EXTENSION_KEY].runtime.failed,
        all(
            SMALLER_FLASK in message
            for message in messages_of(caplog, "baseplate_events.request_queue")
        ),
    )


@pytest.mark.system
@needs_root
def test_pyramid_warns_at_start_up_about_a_planted_queue(
    pyramid_app: Callable[..., TestApp],
    caplog: pytest.LogCaptureFixture,
    queue_name: str,
) -> None:
    """include says, before any request, that another user's queue will be refused."""
    uid = throwaway_uid()
    squat("/events-" + queue_name, uid, os.getegid(), 0o666)
    with caplog.at_level(logging.WARNING):
        app = pyramid_app(**{"events.errors": "log"})
        response = app.get("/put")
    refusal = (
        f"refusing message queue /events-{queue_name}: it belongs to uid {uid}, group "
        "root (gid 0), mode 0666, and events.queue_mode is 0600, which shares the queue "
        "with no group; whoever made it could read every event and forge new ones. Fix: "
        f"remove it (as its owner or root: `baseplate-events-queue {queue_name} --unlink`) "
        "and start again; to share a queue on purpose, set events.queue_mode = 0660 on "
        "both sides and give the queue a group this user belongs to, with no access for "
        "others"
    )
    expected = [refusal, "event not sent (QueueAccessError): " + refusal]
    assert ("ok", expected) == (response.text, caplog.messages)


# -- ulimit -q: EMFILE, told apart from EINVAL ---------------------------------------


@pytest.mark.system
def test_a_queue_bigger_than_the_whole_budget_says_so() -> None:
    """With ulimit -q below one queue's size, the error says this queue alone is too big."""
    name = "/" + unique_queue_name()

    def open_big_queue() -> List[Any]:
        resource.setrlimit(resource.RLIMIT_MSGQUEUE, (50000, 50000))
        try:
            MessageQueue(name, 10, 8192).unlink()
        except QueueLimitError as exc:
            return [exc.errno, exc.strerror]
        return []

    expected = (
        f"cannot open message queue {name} with 10 messages of 8192 bytes (about 82480 "
        "bytes): the kernel answered EMFILE. This queue alone needs more than this user's "
        "budget for queues (ulimit -q=50000 bytes): raise the budget with `ulimit -q "
        "unlimited` in the shell that starts it or `LimitMSGQUEUE=infinity` in the systemd "
        "unit, or ask for a smaller queue with max_messages and max_message_size."
    )
    # As root, a throwaway user, in case CAP_SYS_RESOURCE would let root past the limit.
    uid = throwaway_uid() if os.geteuid() == 0 else None
    assert [errno.EMFILE, expected] == run_as(uid, uid, open_big_queue)


@pytest.mark.system
@needs_root
def test_a_spent_budget_lists_the_users_queues_and_the_fix(mqueue_dir: str) -> None:
    """A throwaway user fills its ulimit -q; the error lists its queues and the unlink command."""
    prefix = unique_queue_name("spent")

    def fill_the_budget() -> Dict[str, Any]:
        queue_limits.MQUEUE_DIR = mqueue_dir
        made: List[MessageQueue] = []
        try:
            for number in range(20):
                made.append(MessageQueue(f"/events-{prefix}-{number:02d}", 10, 8192))
        except QueueLimitError as exc:
            return {"errno": exc.errno, "message": exc.strerror, "made": len(made)}
        finally:
            for queue in made:
                queue.close()
                queue.unlink()
        return {"made": len(made)}

    answer = run_as(throwaway_uid(), throwaway_uid(), fill_the_budget)
    budget = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
    made = budget // queue_bytes(10, 8192)
    listed = ", ".join(
        f"{prefix}-{number:02d} (10 x 8192 bytes, about 82480 bytes, 0 bytes waiting)"
        for number in range(made)
    )
    expected = (
        f"cannot open message queue /events-{prefix}-{made:02d} with 10 messages of 8192 "
        "bytes (about 82480 bytes): the kernel answered EMFILE. This user's budget for "
        f"queues (ulimit -q={budget} bytes) is spent by the queues it already has: "
        f"{listed}. Remove the ones left over with `baseplate-events-queue NAME --unlink`, "
        "raise the budget with `ulimit -q unlimited` in the shell that starts it or "
        "`LimitMSGQUEUE=infinity` in the systemd unit, or ask for a smaller queue with "
        "max_messages and max_message_size. (EMFILE can also mean that this process has "
        "as many descriptors open as `ulimit -n` allows.)"
    )
    assert {"errno": errno.EMFILE, "message": expected, "made": made} == answer


def test_a_spent_budget_without_dev_mqueue_says_how_to_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Where /dev/mqueue is not mounted, the message gives the mount command instead."""
    monkeypatch.setattr(queue_limits, "MQUEUE_DIR", str(tmp_path))
    message = budget_message("/events-x", 10, 8192, "the kernel answered EMFILE")
    expected = (
        f"is spent by the queues it already has: to list them, mount the queue file "
        f"system: `mount -t mqueue none {tmp_path}` (as root), then `ls -l {tmp_path}`. "
    )
    assert expected in message


# -- transactional requests hold at most events.max_held ------------------------------


def test_pyramid_put_past_max_held_fails_and_is_counted(
    pyramid_app: Callable[..., TestApp],
    open_queues: Callable[..., MessageQueue],
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """max_held = 2: the third put of a request fails under log, the first two are sent."""
    reader = open_queues("/events-" + queue_name, 10, 2048)
    with caplog.at_level(logging.WARNING, logger="baseplate_events.request_queue"):
        app = pyramid_app(
            **{
                "events.transactional": "true",
                "events.max_held": "2",
                "events.errors": "log",
                "events.max_messages": "10",
                "events.max_message_size": "2048",
            }
        )
        app.get("/three")
    expected = (
        "event not sent (TooManyHeldEventsError): this request already holds 2 events, "
        "the most events.max_held allows; the event was not sent. Raise events.max_held "
        "or put fewer events per request"
    )
    assert (2, 1, [expected]) == (
        len(reader.get_many(10)),
        app.app.registry[REGISTRY_KEY].failed,
        caplog.messages,
    )


def test_flask_put_past_max_held_raises_under_raise(
    flask_app: Callable[..., Flask], open_queues: Callable[..., MessageQueue], queue_name: str
) -> None:
    """EVENTS_MAX_HELD = 2 under the raise policy: the third put raises into the view."""
    open_queues("/events-" + queue_name, 10, 2048)
    app = flask_app(
        EVENTS_TRANSACTIONAL=True,
        EVENTS_MAX_HELD=2,
        EVENTS_MAX_MESSAGES=10,
        EVENTS_MAX_MESSAGE_SIZE=2048,
    )
    app.testing = True
    with pytest.raises(TooManyHeldEventsError) as info:
        app.test_client().get("/three")
    assert (
        "this request already holds 2 events, the most EVENTS_MAX_HELD allows; the event "
        "was not sent. Raise EVENTS_MAX_HELD or put fewer events per request"
    ) == str(info.value)


# -- events.queue_mode ----------------------------------------------------------------


def test_pyramid_queue_mode_0660_is_exact_under_umask_022(
    pyramid_app: Callable[..., TestApp], queue_name: str
) -> None:
    """events.queue_mode = 0660 creates a 0660 queue whatever the umask."""
    previous = os.umask(0o022)
    try:
        app = pyramid_app(
            **{
                "events.queue_mode": "0660",
                "events.max_messages": "10",
                "events.max_message_size": "2048",
            }
        )
        app.get("/put")
    finally:
        os.umask(previous)
    with MessageQueue("/events-" + queue_name, 1, 1, create=False, check_access=False) as q:
        assert 0o660 == q.mode


def test_flask_queue_mode_narrows_a_wider_queue_of_ours(
    flask_app: Callable[..., Flask], open_queues: Callable[..., MessageQueue], queue_name: str
) -> None:
    """EVENTS_QUEUE_MODE = 0o600 narrows an existing 0660 queue of ours at the first put."""
    reader = open_queues("/events-" + queue_name, 10, 2048, mode=0o660)
    flask_app(EVENTS_MAX_MESSAGES=10, EVENTS_MAX_MESSAGE_SIZE=2048).test_client().get("/three")
    assert (3, 0o600) == (len(reader.get_many(10)), reader.mode)


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        (
            {"events.queue_mode": "rw-rw----"},
            pyramid_key,
            "events.queue_mode: expected an octal mode like 0600 or 0660, got 'rw-rw----'",
        ),
        (
            {"EVENTS_QUEUE_MODE": 0o1777},
            flask_key,
            "EVENTS_QUEUE_MODE: expected an octal mode like 0600 or 0660, got 1023",
        ),
        (
            {"events.queue_mode": "0060"},
            pyramid_key,
            "events.queue_mode: the owner needs read and write (0600), got '0060'",
        ),
        (
            {"events.sink": "file"},
            pyramid_key,
            "events.sink: expected 'queue' or 'log', got 'file'",
        ),
        (
            {"EVENTS_MAX_HELD": 0},
            flask_key,
            "EVENTS_MAX_HELD: expected a positive integer, got 0",
        ),
    ],
)
def test_new_settings_reject_bad_values(
    raw: Dict[str, Any], key: Callable[[str], str], message: str
) -> None:
    """queue_mode, sink and max_held name the key and the problem."""
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, key)
    assert message == str(info.value)


def test_new_settings_parse_ini_strings() -> None:
    """events.queue_mode, events.sink and events.max_held from an INI file."""
    raw = {"events.queue_mode": "0660", "events.sink": "log", "events.max_held": "50"}
    settings = parse_settings(raw, pyramid_key)
    assert (0o660, "log", 50) == (settings.queue_mode, settings.sink, settings.max_held)
