"""baseplate_events: record analytics events without slowing a request.

Events are serialized in the web process and put on a local POSIX message
queue; the publisher daemon (``python -m publisher``) batches, signs and sends
them to the event collector. The framework integrations live in
``baseplate_events.pyramid`` and ``baseplate_events.flask``; neither framework
is imported here.

The package by stage of the data path: ``integrations/`` (Pyramid, Flask) and
``runtime/`` (a request's puts) run in the web process; ``v1`` and ``tjson/``
are the two wire formats an event is serialized to; ``mqueue/`` is the POSIX
queue the publisher takes events from; ``collector/`` is the service the
publisher sends them to.
"""
from .errors import (
    ConfigError,
    EventError,
    EventQueueFullError,
    EventSerializationError,
    EventTooLargeError,
    QueueAccessError,
    QueueLimitError,
    QueuesUnsupportedError,
    TooManyHeldEventsError,
)
from .v1 import Event, FieldKind, serialize_v1_event
from .runtime.event_queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE, EventQueue
from .serializers import serialize_v2_event

__all__ = [
    "MAX_EVENT_SIZE",
    "MAX_QUEUE_SIZE",
    "ConfigError",
    "Event",
    "EventError",
    "EventQueue",
    "EventQueueFullError",
    "EventSerializationError",
    "EventTooLargeError",
    "FieldKind",
    "QueueAccessError",
    "QueueLimitError",
    "QueuesUnsupportedError",
    "TooManyHeldEventsError",
    "serialize_v1_event",
    "serialize_v2_event",
]
