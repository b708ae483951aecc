"""Every exception baseplate_events raises; ``EventError`` is the root.

Messages carry the numbers and the fix, so that a log line alone tells an
operator what went wrong and what to change.
"""
from __future__ import annotations

from typing import Optional


class EventError(Exception):
    """Base class for every error raised by baseplate_events.

    ``except EventError`` catches every failure of a ``put``::

        try:
            queue.put(event)
        except EventError as exc:
            logger.warning("event not sent: %s", exc)
    """


class EventTooLargeError(EventError):
    """The serialized event is larger than the queue's message size.

    ``event is 9000 bytes; this queue takes at most 8192``

    :ivar size: the serialized event's size in bytes.
    :ivar max_size: the queue's message size, when known.
    """

    def __init__(self, size: int, max_size: Optional[int] = None) -> None:
        self.size = size
        self.max_size = max_size
        if max_size is None:
            message = f"event is {size} bytes, too large to send"
        else:
            message = f"event is {size} bytes; this queue takes at most {max_size}"
        super().__init__(message)


class EventQueueFullError(EventError):
    """The queue is full: the publisher is not draining it fast enough.

    ``the event queue /events-v2 is full (10 messages); is its publisher
    running and reaching the collector?``

    :ivar queue_name: the full queue name (``/events-v2``), or ``""``.
    :ivar capacity: the queue's capacity in messages, when known.
    """

    def __init__(self, queue_name: str = "", capacity: Optional[int] = None) -> None:
        self.queue_name = queue_name
        self.capacity = capacity
        where = f" {queue_name}" if queue_name else ""
        size = f" ({capacity} messages)" if capacity is not None else ""
        super().__init__(
            f"the event queue{where} is full{size}; is its publisher running and "
            "reaching the collector?"
        )


class EventSerializationError(EventError, TypeError):
    """An event could not be serialized; the message names the field and the value's type.

    Also a ``TypeError``, as the error baseplate lets through is.
    ``Event.user.logged_in: expected a bool, got str``

    :ivar field: the path of the field (``Event.user.logged_in``, ``payload.when``).
    :ivar problem: what is wrong with its value.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class MessageQueueError(EventError):
    """Base class for errors of the POSIX message queue layer."""


class TimedOutError(MessageQueueError):
    """A queue operation did not complete within its timeout."""

    def __init__(self) -> None:
        super().__init__("timed out waiting for the message queue")


class QueueLimitError(MessageQueueError, OSError):
    """The kernel refused to open a queue of the size asked for.

    Also an ``OSError`` (``EINVAL`` or ``EMFILE``). The message names the size
    asked for, ``fs.mqueue.msg_max``, ``fs.mqueue.msgsize_max``, ``ulimit -q``
    and the commands that raise them; see the Operations guide.
    """


class QueueAccessError(MessageQueueError):
    """The queue belongs to another user who has not shared it with us as configured."""


class QueuesUnsupportedError(MessageQueueError):
    """This platform has no POSIX message queues (macOS, for one)."""

    def __init__(self, name: str) -> None:
        self.queue_name = name
        super().__init__(
            f"cannot open message queue {name}: this platform has no POSIX message "
            "queues (posix_ipc was built without them, as on macOS). To develop "
            "here, write events to the log instead: events.sink = log (Pyramid) "
            'or EVENTS_SINK = "log" (Flask)'
        )


class TooManyHeldEventsError(EventError):
    """A transactional request put more events than it may hold until it ends."""

    def __init__(self, limit: int, key: str) -> None:
        self.limit = limit
        self.key = key
        super().__init__(
            f"this request already holds {limit} events, the most {key} allows; "
            f"the event was not sent. Raise {key} or put fewer events per request"
        )


class ConfigError(EventError, ValueError):
    """A setting is missing or invalid; the message names the full key.

    Also a ``ValueError``. ``events.max_messages: expected an integer, got 'lots'``

    :ivar key: the full key (``events.max_messages``, ``EVENTS_ERRORS``,
        ``collector.version``).
    :ivar problem: what is wrong and what is expected.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")
