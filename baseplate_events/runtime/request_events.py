"""A request's events and the runtime that puts them: RequestEvents, EventsRuntime.

Each request gets a :class:`RequestEvents` (``request.events_v2`` in Pyramid,
``flask.g.events_v2`` in Flask). Its ``put(event)`` runs the registered
fillers, auto-fills ``source``, ``client_timestamp`` and ``uuid`` where the
struct has such a field and it is still ``None``
(:mod:`baseplate_events.runtime.autofill`), serializes the event with
:func:`~baseplate_events.serialize_v2_event` and hands the bytes to one
process-wide :class:`~baseplate_events.EventQueue` (a
:class:`~baseplate_events.runtime.shared_queue.SharedQueue`), or holds them until the request ends
when the integration is transactional. A failed put follows the error policy
and is counted (:mod:`baseplate_events.runtime.loss_metrics`); while a test captures
events, they go to its recorder instead (:mod:`baseplate_events.runtime.capture`).

Everything framework-specific (when a request starts and how it ended) lives
in :mod:`baseplate_events.integrations`; the rest of a put is tied together here.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, List, Optional, Protocol, Tuple

from .autofill import Autofill
from ..errors import EventError, EventTooLargeError, TooManyHeldEventsError
from .log_sink import LogSink
from .loss_metrics import LossMetrics
from .capture import active_recorders as _recorders
from ..serializers import serialize_v2_event
from .settings import EventsSettings, pyramid_key
from .shared_queue import SharedQueue

__all__ = [
    "EventsRuntime",
    "Filler",
    "RequestEvents",
    "SharedQueue",
]

logger = logging.getLogger("baseplate_events.request_queue")

#: A filler completes an event from the request it was put in:
#: ``filler(event, request)``. It runs before auto-fill, on every put, and
#: should set only fields that are still ``None``.
Filler = Callable[[Any, Any], None]


class SerializedEventSink(Protocol):
    """Where a runtime sends serialized events: a
    :class:`~baseplate_events.runtime.shared_queue.SharedQueue` or a
    :class:`~baseplate_events.runtime.log_sink.LogSink`."""

    @property
    def max_message_size(self) -> int: ...

    def put_serialized(self, serialized: bytes) -> None: ...


class EventsRuntime:
    """One integration's settings, fillers and process-wide queue.

    The Pyramid integration keeps it in ``registry["baseplate_events"]``, the
    Flask one in ``app.extensions["baseplate_events"]``.

    :param settings: parsed by :func:`~baseplate_events.runtime.settings.parse_settings`.
    :param fillers: the list fillers are registered in; it is shared, not copied,
        so fillers added later still run.
    :param key: how the framework spells a setting's full key
        (:func:`~baseplate_events.runtime.settings.pyramid_key` or ``flask_key``), for
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
        #: Where events go: :attr:`queue`, or a :class:`~baseplate_events.runtime.log_sink.LogSink`.
        self.sink: SerializedEventSink = (
            self.queue
            if settings.sink == "queue"
            else LogSink(settings.queue_name, settings.max_message_size)
        )
        self.max_held = settings.max_held
        # Read on every put: plain attributes, not a walk through settings.
        self.policy_raises = settings.error_policy == "raise"
        self.autofill_enabled = settings.autofill
        #: Puts that failed under the ``log`` policy, and held events that
        #: could not be sent when their request ended.
        self.failed = 0
        #: Held events dropped because their request failed (transactional mode).
        self.discarded = 0
        self._count_lock = threading.Lock()
        #: Completes events; see :mod:`baseplate_events.runtime.autofill`.
        self.autofiller = Autofill(settings.source)
        #: Counts what puts lose; see :mod:`baseplate_events.runtime.loss_metrics`.
        self.losses = LossMetrics(settings, key)

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
        self.autofiller.fill(event)

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
        self.losses.incr(name, value)

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
                runtime.autofiller.fill(event)
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
            if runtime.policy_raises:
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
