"""The request-scoped queue both integrations share, on real POSIX queues.

Framework-free: a plain object stands in for the request, which the core only
hands to fillers.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
import uuid
from types import SimpleNamespace
from typing import Any, Callable, List, Optional

import posix_ipc
import pytest
from thrift.protocol.TBase import TBase
from thrift.Thrift import TType

from baseplate_events import (
    EventQueueFullError,
    EventSerializationError,
    EventTooLargeError,
    QueueLimitError,
    serialize_v2_event,
)
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.runtime.request_events import EventsRuntime
from baseplate_events.runtime.settings import EventsSettings
from event_schemas.event.ttypes import Event, Request

from tests.support.apps import MESSAGE_SIZE, decode

NOW = 1700000000.123456
NOW_MS = 1700000000123


class PageView(TBase):
    """A struct of a schema baseplate_events has never seen (``thrift --gen py:slots``)."""

    __slots__ = ("uuid", "page", "client_timestamp", "origin")
    thrift_spec = (
        None,
        (1, TType.STRING, "uuid", "UTF8", None),
        (2, TType.STRING, "page", "UTF8", None),
        (3, TType.I64, "client_timestamp", None, None),
        (4, TType.STRING, "origin", "UTF8", None),
    )

    def __init__(
        self,
        uuid: Optional[str] = None,
        page: Optional[str] = None,
        client_timestamp: Optional[int] = None,
        origin: Optional[str] = None,
    ) -> None:
        self.uuid = uuid
        self.page = page
        self.client_timestamp = client_timestamp
        self.origin = origin


class Clicked(TBase):
    """A schema whose ``client_timestamp`` is a string: not ours to fill."""

    __slots__ = ("client_timestamp",)
    thrift_spec = (None, (1, TType.STRING, "client_timestamp", "UTF8", None))

    def __init__(self, client_timestamp: Optional[str] = None) -> None:
        self.client_timestamp = client_timestamp


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake the clock: time.time() is NOW."""
    monkeypatch.setattr(time, "time", lambda: NOW)


@pytest.fixture
def make_runtime(
    queue_name: str, runtimes: List[EventsRuntime]
) -> Callable[..., EventsRuntime]:
    """Build runtimes on the test queue; every one is closed on teardown."""

    def factory(**overrides: Any) -> EventsRuntime:
        base = EventsSettings(
            queue_name=queue_name, source="svc", max_messages=10, max_message_size=MESSAGE_SIZE
        )
        runtime = EventsRuntime(dataclasses.replace(base, **overrides))
        runtimes.append(runtime)
        return runtime

    return factory


REQUEST = SimpleNamespace(user_agent="curl/8.5", domain="example.com")


def test_put_sends_v2_bytes(make_runtime: Any, small_reader: MessageQueue) -> None:
    """A put writes the event's TJSONProtocol bytes to the queue."""
    event = Event(source="a", action="b", noun="c", client_timestamp=1, uuid="u")
    make_runtime().for_request(REQUEST).put(event)
    assert serialize_v2_event(event) == small_reader.get(timeout=0)


def test_autofill_fills_missing_fields(
    make_runtime: Any, small_reader: MessageQueue, frozen_time: None
) -> None:
    """source, client_timestamp (int ms) and a uuid4 are filled where None."""
    make_runtime().for_request(REQUEST).put(Event(action="login"))
    received = decode(small_reader.get(timeout=0))
    assert ("svc", "login", NOW_MS) == (received.source, received.action, received.client_timestamp)
    assert 4 == uuid.UUID(received.uuid).version


def test_autofill_keeps_caller_values(make_runtime: Any, small_reader: MessageQueue) -> None:
    """A field the caller set is never overwritten."""
    event = Event(source="mine", client_timestamp=5, uuid="my-id")
    make_runtime().for_request(REQUEST).put(event)
    received = decode(small_reader.get(timeout=0))
    assert ("mine", 5, "my-id") == (received.source, received.client_timestamp, received.uuid)


def test_autofill_can_be_switched_off(make_runtime: Any, small_reader: MessageQueue) -> None:
    """With autofill off the event goes out as the caller built it."""
    make_runtime(autofill=False).for_request(REQUEST).put(Event(action="login"))
    assert Event(action="login") == decode(small_reader.get(timeout=0))


def test_no_source_setting_leaves_source_alone(
    make_runtime: Any, small_reader: MessageQueue
) -> None:
    """Without a configured source, source stays None while the rest is filled."""
    make_runtime(source=None).for_request(REQUEST).put(Event(action="login"))
    received = decode(small_reader.get(timeout=0))
    assert (None, True) == (received.source, received.uuid is not None)


def test_autofill_on_an_unseen_schema(
    make_runtime: Any, small_reader: MessageQueue, frozen_time: None
) -> None:
    """Fields are found from the struct's own thrift_spec: only those it has are filled."""
    make_runtime().for_request(REQUEST).put(PageView(page="/home"))
    received = decode(small_reader.get(timeout=0), PageView())
    assert ("/home", NOW_MS, None) == (received.page, received.client_timestamp, received.origin)
    assert 4 == uuid.UUID(received.uuid).version


def test_field_of_another_type_is_not_filled(make_runtime: Any) -> None:
    """A client_timestamp that is not an integer or double field is left alone."""
    event = Clicked()
    make_runtime().autofill(event)
    assert None is event.client_timestamp


def test_plain_object_is_filled_by_its_attributes(make_runtime: Any, frozen_time: None) -> None:
    """Without a thrift_spec, the fields an object has are filled and no others."""
    event = SimpleNamespace(source=None, uuid="kept")
    make_runtime().autofill(event)
    assert SimpleNamespace(source="svc", uuid="kept") == event


def test_fillers_get_event_and_request(make_runtime: Any, small_reader: MessageQueue) -> None:
    """A filler completes the event from the request it was put in."""
    runtime = make_runtime()

    def fill_request(event: Any, request: Any) -> None:
        event.request = Request(user_agent=request.user_agent, domain=request.domain)

    runtime.add_filler(fill_request)
    runtime.for_request(REQUEST).put(Event(action="login"))
    received = decode(small_reader.get(timeout=0))
    assert Request(user_agent="curl/8.5", domain="example.com") == received.request


def test_fillers_run_before_autofill(make_runtime: Any, small_reader: MessageQueue) -> None:
    """A filler's source wins over the configured one."""
    runtime = make_runtime()
    runtime.add_filler(lambda event, request: setattr(event, "source", "per-request"))
    runtime.for_request(REQUEST).put(Event())
    assert "per-request" == decode(small_reader.get(timeout=0)).source


def test_non_callable_filler_is_refused(make_runtime: Any) -> None:
    """Registering something that cannot be called fails at once."""
    with pytest.raises(TypeError) as caught:
        make_runtime().add_filler("fill")
    assert "an event filler must be callable, got 'fill'" == str(caught.value)


def test_raise_policy_raises_into_the_caller(
    make_runtime: Any, small_reader: MessageQueue
) -> None:
    """Under ``raise`` an oversized event raises EventTooLargeError and queues nothing."""
    event = Event(payload=b"x" * 3000)
    with pytest.raises(EventTooLargeError) as caught:
        make_runtime().for_request(REQUEST).put(event)
    size = len(serialize_v2_event(event))
    assert f"event is {size} bytes; this queue takes at most 2048" == str(caught.value)
    assert 0 == small_reader.depth


def test_log_policy_logs_counts_and_carries_on(
    make_runtime: Any, small_reader: MessageQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Under ``log`` a failed put is one log line and one count, and returns."""
    runtime = make_runtime(error_policy="log")
    event = Event(payload=b"x" * 3000)
    runtime.for_request(REQUEST).put(event)
    size = len(serialize_v2_event(event))
    expected = (
        f"event not sent (EventTooLargeError): event is {size} bytes; "
        "this queue takes at most 2048"
    )
    assert ([expected], 1) == (caplog.messages, runtime.failed)


def test_log_policy_covers_serialization_errors(
    make_runtime: Any, small_reader: MessageQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Under ``log`` an event with a wrongly typed field is logged, not raised."""
    runtime = make_runtime(error_policy="log")
    runtime.for_request(REQUEST).put(Event(action=3))
    expected = "event not sent (EventSerializationError): Event.action: expected a string, got int"
    assert [expected] == caplog.messages


def test_wrong_type_raises_naming_the_field(make_runtime: Any) -> None:
    """Under ``raise`` a wrongly typed field names itself."""
    with pytest.raises(EventSerializationError) as caught:
        make_runtime().for_request(REQUEST).put(Event(action=3))
    assert "Event.action: expected a string, got int" == str(caught.value)


def test_full_queue_raises(make_runtime: Any, queue_name: str, open_queues: Any) -> None:
    """A put on a full queue raises EventQueueFullError at once (put_timeout 0)."""
    open_queues("/events-" + queue_name, 1, MESSAGE_SIZE)
    events = make_runtime().for_request(REQUEST)
    events.put(Event())
    with pytest.raises(EventQueueFullError) as caught:
        events.put(Event())
    expected = (
        f"the event queue /events-{queue_name} is full (1 messages); is its publisher "
        "running and reaching the collector?"
    )
    assert expected == str(caught.value)


def test_queue_is_opened_lazily(make_runtime: Any, queue_name: str) -> None:
    """Building a runtime and a request's queue opens nothing."""
    make_runtime().for_request(REQUEST)
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/events-" + queue_name)


def test_refused_queue_surfaces_at_first_put(make_runtime: Any) -> None:
    """A queue bigger than the kernel allows fails the first put with QueueLimitError."""
    with open("/proc/sys/fs/mqueue/msg_max") as f:
        too_many = int(f.read()) + 1
    events = make_runtime(max_messages=too_many).for_request(REQUEST)
    with pytest.raises(QueueLimitError) as caught:
        events.put(Event())
    assert f"with {too_many} messages of 2048 bytes" in str(caught.value)


def test_close_then_put_reopens(make_runtime: Any, small_reader: MessageQueue) -> None:
    """After close() the next put opens the queue again."""
    runtime = make_runtime()
    runtime.for_request(REQUEST).put(Event(noun="first"))
    runtime.close()
    runtime.for_request(REQUEST).put(Event(noun="second"))
    received = [decode(message).noun for message in small_reader.get_many(10)]
    assert ["first", "second"] == received


@pytest.mark.system
def test_forked_child_opens_its_own_descriptor(
    make_runtime: Any, small_reader: MessageQueue
) -> None:
    """A child process does not reuse the descriptor its parent opened (gunicorn --preload)."""
    runtime = make_runtime()
    runtime.for_request(REQUEST).put(Event(noun="parent"))
    parent_queue = runtime.queue.get()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 1
        try:
            runtime.for_request(REQUEST).put(Event(noun="child"))
            status = 0 if runtime.queue.get() is not parent_queue else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    received = [decode(message).noun for message in small_reader.get_many(10)]
    assert (0, ["parent", "child"]) == (os.waitstatus_to_exitcode(status), received)


def test_transactional_holds_until_finish(make_runtime: Any, small_reader: MessageQueue) -> None:
    """In transactional mode nothing is sent before the request succeeds."""
    events = make_runtime(transactional=True).for_request(REQUEST)
    events.put(Event(noun="held"))
    assert (0, 1) == (small_reader.depth, events.pending)


def test_transactional_success_sends_held_events(
    make_runtime: Any, small_reader: MessageQueue
) -> None:
    """finish(True) sends the held events in order."""
    events = make_runtime(transactional=True).for_request(REQUEST)
    events.put(Event(noun="a"))
    events.put(Event(noun="b"))
    events.finish(True)
    assert ["a", "b"] == [decode(message).noun for message in small_reader.get_many(10)]


def test_transactional_failure_drops_held_events(
    make_runtime: Any, small_reader: MessageQueue
) -> None:
    """finish(False) sends nothing and counts the discarded events."""
    runtime = make_runtime(transactional=True)
    events = runtime.for_request(REQUEST)
    events.put(Event())
    events.finish(False)
    assert (0, 1) == (small_reader.depth, runtime.discarded)


def test_put_after_finish_is_sent_at_once(make_runtime: Any, small_reader: MessageQueue) -> None:
    """Once the request's outcome is known, a put goes straight to the queue."""
    events = make_runtime(transactional=True).for_request(REQUEST)
    events.finish(False)
    events.put(Event(noun="late"))
    assert "late" == decode(small_reader.get(timeout=0)).noun


def test_transactional_bad_event_fails_at_put(make_runtime: Any) -> None:
    """A held event is serialized at put, so its error reaches the caller there."""
    events = make_runtime(transactional=True).for_request(REQUEST)
    with pytest.raises(EventSerializationError):
        events.put(Event(action=3))


def test_transactional_full_queue_at_finish_is_logged(
    make_runtime: Any, queue_name: str, open_queues: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An event that cannot be sent at finish is logged and counted, never raised."""
    open_queues("/events-" + queue_name, 1, MESSAGE_SIZE)
    runtime = make_runtime(transactional=True)
    events = runtime.for_request(REQUEST)
    events.put(Event())
    events.put(Event())
    with caplog.at_level(logging.ERROR):
        events.finish(True)
    expected = (
        f"held event not sent (EventQueueFullError): the event queue /events-{queue_name} "
        "is full (1 messages); is its publisher running and reaching the collector?"
    )
    assert ([expected], 1) == (caplog.messages, runtime.failed)


def test_log_policy_covers_a_failing_filler(
    make_runtime: Any, small_reader: MessageQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Under ``log`` a filler's own bug is logged with its traceback, not raised."""
    runtime = make_runtime(error_policy="log")

    def broken_filler(event: Any, request: Any) -> None:
        raise KeyError("user")

    runtime.add_filler(broken_filler)
    runtime.for_request(REQUEST).put(Event())
    record = caplog.records[0]
    assert ("event not sent (KeyError): 'user'", True, 1) == (
        record.getMessage(),
        record.exc_info is not None,
        runtime.failed,
    )


def kernel_msg_max() -> int:
    with open("/proc/sys/fs/mqueue/msg_max") as f:
        return int(f.read())


def test_startup_problem_names_a_queue_that_cannot_be_created(
    make_runtime: Any, queue_name: str
) -> None:
    """A missing queue bigger than the kernel allows is reported before any put."""
    too_many = kernel_msg_max() + 1
    with open("/proc/sys/fs/mqueue/msgsize_max") as f:
        msgsize_max = int(f.read())
    expected = (
        f"/events-{queue_name} does not exist yet and {too_many} messages of 2048 bytes "
        f"exceed this machine's limits (fs.mqueue.msg_max={too_many - 1}, "
        f"fs.mqueue.msgsize_max={msgsize_max}): puts will fail with QueueLimitError until "
        f"the publisher creates the queue, the limits are raised (`sysctl -w "
        f"fs.mqueue.msg_max={too_many}` and `sysctl -w fs.mqueue.msgsize_max=2048` as "
        "root), or the queue is configured smaller with events.max_messages and "
        "events.max_message_size"
    )
    assert expected == make_runtime(max_messages=too_many).queue.startup_problem()


def test_startup_problem_trusts_an_existing_queue(
    make_runtime: Any, small_reader: MessageQueue
) -> None:
    """When the queue exists its own size rules: nothing to report."""
    too_many = kernel_msg_max() + 1
    assert None is make_runtime(max_messages=too_many).queue.startup_problem()


def test_startup_problem_is_none_within_limits(make_runtime: Any, queue_name: str) -> None:
    """A queue the kernel allows is not reported, and the check creates nothing."""
    assert None is make_runtime().queue.startup_problem()
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/events-" + queue_name)


@pytest.mark.system
def test_lock_held_at_fork_does_not_block_the_child(
    make_runtime: Any, small_reader: MessageQueue
) -> None:
    """A child forked while another thread held the opening lock can still put."""
    runtime = make_runtime()
    runtime.queue._lock.acquire()  # as if another thread were opening the queue
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            status = 1
            try:
                signal.alarm(5)  # a deadlock ends in SIGALRM, not a hung suite
                runtime.for_request(REQUEST).put(Event(noun="child"))
                status = 0
            finally:
                os._exit(status)
    finally:
        runtime.queue._lock.release()
    _, status = os.waitpid(pid, 0)
    assert (0, "child") == (os.waitstatus_to_exitcode(status), decode(small_reader.get(0)).noun)
