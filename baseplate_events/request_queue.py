"""The request-scoped event queue that the Pyramid and Flask integrations share.

Each request gets a :class:`RequestEvents` (``request.events_v2`` in Pyramid,
``flask.g.events_v2`` in Flask). Its ``put(event)`` runs the registered
fillers, auto-fills ``source``, ``client_timestamp`` and ``uuid`` where the
struct has such a field and it is still ``None``, serializes the event with
:func:`~baseplate_events.serialize_v2_event` and hands the bytes to one
process-wide :class:`~baseplate_events.EventQueue` (a :class:`SharedQueue`),
or holds them until the request ends when the integration is transactional.

Everything framework-specific (when a request starts and how it ended) lives
in :mod:`baseplate_events.integrations`; everything else lives here.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from thrift.Thrift import TType

from .errors import (
    ConfigError,
    EventError,
    EventTooLargeError,
    MessageQueueError,
    TooManyHeldEventsError,
)
from .log_sink import LogSink
from .message_queue import MessageQueue, queues_supported
from .queue import EventQueue
from .queue_limits import QueueSettingNames, kernel_limits
from .serializers import serialize_v2_event
from .settings import EventsSettings, pyramid_key

__all__ = [
    "EventsRuntime",
    "Filler",
    "RequestEvents",
    "SharedQueue",
]

logger = logging.getLogger(__name__)

#: A filler completes an event from the request it was put in:
#: ``filler(event, request)``. It runs before auto-fill, on every put, and
#: should set only fields that are still ``None``.
Filler = Callable[[Any, Any], None]

_UUID = getattr(TType, "UUID", 16)


class SharedQueue:
    """The process-wide :class:`EventQueue`, opened at first use, re-opened after a fork.

    Opening lazily means a server that imports the application and then forks
    its workers (gunicorn ``--preload``) never shares one descriptor between
    processes: a worker that finds the queue was opened under another pid
    opens its own. It also means an error opening the queue (the kernel's
    limits, see :class:`~baseplate_events.QueueLimitError`) surfaces at the
    first ``put``, under the integration's error policy.
    """

    def __init__(
        self, settings: EventsSettings, key: Callable[[str], str] = pyramid_key
    ) -> None:
        self.settings = settings
        self._key = key
        self._names = QueueSettingNames(
            key("max_messages"), key("max_message_size"), key("queue_mode")
        )
        self._queue: Optional[EventQueue[Any]] = None
        self._pid = 0
        self._lock = threading.Lock()
        _shared_queues.add(self)

    def get(self) -> EventQueue[Any]:
        """The queue, opened in this process.

        :raises QueueLimitError: the kernel refused a queue of the configured size.
        """
        queue = self._queue
        if queue is not None and self._pid == os.getpid():
            return queue
        return self._open()

    def _open(self) -> EventQueue[Any]:
        pid = os.getpid()
        with self._lock:
            if self._queue is not None and self._pid != pid:
                # Forked after the parent opened it: that descriptor is the
                # parent's. Closing this process's copy leaves the parent's open.
                inherited, self._queue = self._queue, None
                inherited.close()
            if self._queue is None:
                settings = self.settings
                self._queue = EventQueue(
                    settings.queue_name,
                    serialize_v2_event,
                    max_messages=settings.max_messages,
                    max_message_size=settings.max_message_size,
                    put_timeout=settings.put_timeout,
                    mode=settings.queue_mode,
                    setting_names=self._names,
                )
                self._pid = pid
            return self._queue

    def _after_fork_in_child(self) -> None:
        # The parent's lock may have been held, at the fork, by a thread that
        # does not exist here; this process needs a lock of its own.
        self._lock = threading.Lock()

    def startup_problem(self) -> Optional[str]:
        """Why the first put is bound to fail, if the kernel can tell already; else None.

        Called at include / ``init_app`` time, in the process that will fork,
        so it keeps no descriptor open and changes nothing. Reported: a platform
        without queues; an existing queue that puts would refuse (another
        user's, not shared as ``queue_mode`` allows) or cannot open; a missing
        queue that the kernel's limits forbid (an existing one's own size rules).
        """
        settings = self.settings
        name = "/events-" + settings.queue_name
        if not queues_supported():
            return (
                f"this platform has no POSIX message queues, so every put to {name} "
                "will fail; for development, send events to the log instead with "
                f"{self._key('sink')} = log"
            )
        try:
            existing = MessageQueue(name, 1, 1, create=False, check_access=False)
        except MessageQueueError as exc:
            if "does not exist" in str(exc):
                return self._size_problem(name)
            return f"puts to {name} will fail: {exc}"
        with existing:
            return existing.access_problem(settings.queue_mode, self._names)

    def _size_problem(self, name: str) -> Optional[str]:
        """Why a missing queue of the configured size cannot be created, if the kernel says."""
        settings = self.settings
        limits = kernel_limits()
        msg_max, msgsize_max = limits["msg_max"], limits["msgsize_max"]
        if (msg_max is None or settings.max_messages <= msg_max) and (
            msgsize_max is None or settings.max_message_size <= msgsize_max
        ):
            return None
        return (
            f"{name} does not exist yet and {settings.max_messages} messages of "
            f"{settings.max_message_size} bytes exceed this machine's limits "
            f"(fs.mqueue.msg_max={msg_max}, fs.mqueue.msgsize_max={msgsize_max}): "
            "puts will fail with QueueLimitError until the publisher creates the "
            "queue, the limits are raised (`sysctl -w fs.mqueue.msg_max="
            f"{settings.max_messages}` and `sysctl -w fs.mqueue.msgsize_max="
            f"{settings.max_message_size}` as root), or the queue is configured "
            f"smaller with {self._names.max_messages} and {self._names.max_message_size}"
        )

    @property
    def max_message_size(self) -> int:
        """The real queue's message size (an existing queue's own attribute rules)."""
        return self.get().max_message_size

    def put_serialized(self, serialized: bytes) -> None:
        """Send one serialized event.

        :raises EventTooLargeError: larger than the queue's message size.
        :raises EventQueueFullError: the queue stayed full for ``put_timeout``.
        :raises QueueLimitError: the queue could not be opened.
        """
        self.get().put_serialized(serialized)

    def close(self) -> None:
        """Close this process's descriptor; the next put opens it again."""
        with self._lock:
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.close()

    def __repr__(self) -> str:
        state = "open" if self._queue is not None else "not yet opened"
        return f"<SharedQueue /events-{self.settings.queue_name} ({state})>"


_shared_queues: "weakref.WeakSet[SharedQueue]" = weakref.WeakSet()


def _reset_locks_after_fork() -> None:
    for shared in list(_shared_queues):
        shared._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_locks_after_fork)


class Sink(Protocol):
    """Where a runtime sends serialized events: a :class:`SharedQueue` or a
    :class:`~baseplate_events.log_sink.LogSink`."""

    @property
    def max_message_size(self) -> int: ...

    def put_serialized(self, serialized: bytes) -> None: ...


class Recorder(Protocol):
    """Where :mod:`baseplate_events.testing` collects events instead of a queue."""

    def record(self, event: Any, serialized: bytes) -> None: ...


# Active recorders, innermost last; while any is active no queue is touched.
_recorders: List[Recorder] = []


def push_recorder(recorder: Recorder) -> None:
    """Send every event to ``recorder`` instead of a queue (for :mod:`baseplate_events.testing`)."""
    _recorders.append(recorder)


def pop_recorder(recorder: Recorder) -> None:
    """Stop sending events to ``recorder``."""
    _recorders.remove(recorder)


# (field name, factory of its value) for each auto-filled field a class has.
_Plan = Tuple[Tuple[str, Callable[[], Any]], ...]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _now_ms_float() -> float:
    return float(int(time.time() * 1000))


def _new_uuid() -> str:
    return str(uuid.uuid4())


def _statsd_client(settings: EventsSettings, key: Callable[[str], str]) -> Any:
    """A statsd client for the app-side loss counters, or None when not configured."""
    if settings.metrics_endpoint is None:
        return None
    try:
        import statsd
    except ImportError:
        raise ConfigError(
            key("metrics_endpoint"),
            "needs the statsd package (pip install 'baseplate-events[publisher]')",
        ) from None
    host, _, port = settings.metrics_endpoint.rpartition(":")
    return statsd.StatsClient(host, int(port), prefix=settings.metrics_namespace or None)


def _loss_counters(settings: EventsSettings) -> Any:
    """The Prometheus loss counters of the settings' queue, or None when not configured."""
    if not settings.prometheus:
        return None
    from .prometheus import LossCounters

    return LossCounters(settings.queue_name)


class EventsRuntime:
    """One integration's settings, fillers and process-wide queue.

    The Pyramid integration keeps it in ``registry["baseplate_events"]``, the
    Flask one in ``app.extensions["baseplate_events"]``.

    :param settings: parsed by :func:`~baseplate_events.settings.parse_settings`.
    :param fillers: the list fillers are registered in; it is shared, not copied,
        so fillers added later still run.
    :param key: how the framework spells a setting's full key
        (:func:`~baseplate_events.settings.pyramid_key` or ``flask_key``), for
        error messages that name the setting to change.
    """

    def __init__(
        self,
        settings: EventsSettings,
        fillers: Optional[List[Filler]] = None,
        key: Callable[[str], str] = pyramid_key,
    ) -> None:
        self.settings = settings
        self.key = key
        self.fillers: List[Filler] = fillers if fillers is not None else []
        #: The process-wide queue; opened at the first put, and only with the queue sink.
        self.queue = SharedQueue(settings, key)
        #: Where events go: :attr:`queue`, or a :class:`~baseplate_events.log_sink.LogSink`.
        self.sink: Sink = (
            self.queue
            if settings.sink == "queue"
            else LogSink(settings.queue_name, settings.max_message_size)
        )
        self.max_held = settings.max_held
        # Read on every put: plain attributes, not a walk through settings.
        self.raise_errors = settings.errors == "raise"
        self.autofill_enabled = settings.autofill
        #: Puts that failed under the ``log`` policy, and held events that
        #: could not be sent when their request ended.
        self.failed = 0
        #: Held events dropped because their request failed (transactional mode).
        self.discarded = 0
        self._count_lock = threading.Lock()
        self._plans: Dict[type, _Plan] = {}
        self._metrics = _statsd_client(settings, key)
        self._prometheus = _loss_counters(settings)

    def add_filler(self, filler: Filler) -> None:
        """Run ``filler(event, request)`` on every event put from now on."""
        if not callable(filler):
            raise TypeError(f"an event filler must be callable, got {filler!r}")
        self.fillers.append(filler)

    def for_request(self, request: Any, hold: Optional[bool] = None) -> "RequestEvents":
        """The ``events_v2`` object of one request.

        :param hold: hold events until :meth:`RequestEvents.finish`; by default
            when the settings are transactional. Only an integration that will
            call ``finish`` may hold.
        """
        return RequestEvents(self, request, self.settings.transactional if hold is None else hold)

    def startup_problem(self) -> Optional[str]:
        """Why puts are bound to fail, if that can be told at start-up; else None."""
        if self.settings.sink != "queue":
            return None
        return self.queue.startup_problem()

    def close(self) -> None:
        """Close the process-wide queue's descriptor (tests, shutdown)."""
        self.queue.close()

    # -- the steps of a put ----------------------------------------------------

    def autofill(self, event: Any) -> None:
        """Fill ``source``, ``client_timestamp`` and ``uuid`` where they exist and are None."""
        cls = type(event)
        plan = self._plans.get(cls)
        if plan is None:
            if getattr(cls, "thrift_spec", None) is None:
                # Not a generated struct: decide per instance, without caching.
                plan = self._plan_from_attributes(event)
            else:
                plan = self._plans[cls] = self._plan_from_spec(cls.thrift_spec)
        for name, make in plan:
            if getattr(event, name, None) is None:
                setattr(event, name, make())

    def _source_factory(self) -> Optional[Callable[[], Any]]:
        source = self.settings.source
        if source is None:
            return None
        return lambda: source

    def _plan_from_spec(self, spec: Any) -> _Plan:
        types = {entry[2]: entry[1] for entry in spec if entry}
        factories: Dict[str, Optional[Callable[[], Any]]] = {
            "source": self._source_factory() if types.get("source") == TType.STRING else None,
            "client_timestamp": {TType.I64: _now_ms, TType.DOUBLE: _now_ms_float}.get(
                types.get("client_timestamp", -1)
            ),
            "uuid": _new_uuid if types.get("uuid") in (TType.STRING, _UUID) else None,
        }
        return tuple((name, make) for name, make in factories.items() if make is not None)

    def _plan_from_attributes(self, event: Any) -> _Plan:
        factories = {
            "source": self._source_factory(),
            "client_timestamp": _now_ms,
            "uuid": _new_uuid,
        }
        return tuple(
            (name, make)
            for name, make in factories.items()
            if make is not None and hasattr(event, name)
        )

    def check_size(self, serialized: bytes) -> None:
        """:raises EventTooLargeError: the queue would refuse these bytes."""
        limit = self.settings.max_message_size if _recorders else self.sink.max_message_size
        if len(serialized) > limit:
            raise EventTooLargeError(len(serialized), limit)

    def send(self, event: Any, serialized: bytes) -> None:
        """Put serialized bytes on the queue (or in the active test recorder)."""
        if _recorders:
            self.check_size(serialized)
            _recorders[-1].record(event, serialized)
        else:
            self.sink.put_serialized(serialized)

    def count(self, failed: int = 0, discarded: int = 0) -> None:
        with self._count_lock:
            self.failed += failed
            self.discarded += discarded
        if discarded:
            self.metric("put.discarded", discarded)

    def metric(self, name: str, value: int = 1) -> None:
        """Count ``name`` in statsd (UDP: never blocks) and Prometheus, each when configured."""
        if self._metrics is not None:
            self._metrics.incr(name, value)
        if self._prometheus is not None:
            self._prometheus.incr(name, value)

    def __repr__(self) -> str:
        return f"<EventsRuntime {self.settings!r} fillers={len(self.fillers)}>"


class RequestEvents:
    """A request's ``events_v2``: ``put(event)`` with fillers, auto-fill and the error policy.

    In transactional mode events are held (already serialized, so a bad event
    still fails at its ``put``) until the integration calls :meth:`finish`.
    Events put after that, from a finished callback or a later teardown
    function, are sent at once: the request's outcome is already known.
    """

    __slots__ = ("_held", "_request", "_runtime", "status")

    def __init__(self, runtime: EventsRuntime, request: Any, hold: bool = False) -> None:
        self._runtime = runtime
        self._request = request
        self._held: Optional[List[Tuple[Any, bytes]]] = [] if hold else None
        #: The response's status code, when the integration has seen it.
        self.status: Optional[int] = None

    def put(self, event: Any) -> None:
        """Complete, serialize and queue (or hold) ``event``.

        Under the ``raise`` policy errors reach the caller; under ``log`` they
        are logged in one line, counted in ``failed``, and the request carries on.

        :raises EventSerializationError: a field holds a value of the wrong type.
        :raises EventTooLargeError: the serialized event exceeds the queue's size.
        :raises EventQueueFullError: the queue stayed full for ``put_timeout``.
        :raises QueueLimitError: the process-wide queue could not be opened.
        """
        runtime = self._runtime
        try:
            for filler in runtime.fillers:
                filler(event, self._request)
            if runtime.autofill_enabled:
                runtime.autofill(event)
            serialized = serialize_v2_event(event)
            held = self._held
            if held is None:
                runtime.send(event, serialized)
            else:
                if len(held) >= runtime.max_held:
                    raise TooManyHeldEventsError(runtime.max_held, runtime.key("max_held"))
                runtime.check_size(serialized)
                held.append((event, serialized))
        except Exception as exc:
            runtime.metric("put.failed." + type(exc).__name__)
            if runtime.raise_errors:
                raise
            runtime.count(failed=1)
            if isinstance(exc, EventError):
                logger.warning("event not sent (%s): %s", type(exc).__name__, exc)
            else:
                logger.exception("event not sent (%s): %s", type(exc).__name__, exc)

    @property
    def pending(self) -> int:
        """How many events are held for the end of the request."""
        return len(self._held) if self._held else 0

    def finish(self, succeeded: bool) -> None:
        """End the transactional window: send held events if ``succeeded``, else drop them.

        Never raises: the response is already decided, so an event that cannot
        be sent now is logged and counted in ``failed`` under either policy.
        """
        held, self._held = self._held, None
        if not held:
            return
        runtime = self._runtime
        if not succeeded:
            runtime.count(discarded=len(held))
            return
        for event, serialized in held:
            try:
                runtime.send(event, serialized)
            except Exception as exc:
                runtime.metric("put.failed." + type(exc).__name__)
                runtime.count(failed=1)
                logger.error("held event not sent (%s): %s", type(exc).__name__, exc)

    def __repr__(self) -> str:
        return f"<RequestEvents /events-{self._runtime.settings.queue_name} pending={self.pending}>"
