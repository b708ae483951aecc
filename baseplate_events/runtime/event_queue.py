"""``EventQueue``: serialize an event and hand it to the local publisher.

This is the only piece that runs inside a request. ``put`` serializes and does
one non-blocking ``mq_send``; it never touches the network.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Optional, TypeVar

from ..errors import EventQueueFullError, EventTooLargeError, TimedOutError
from ..mqueue.posix import DEFAULT_MODE, MessageQueue
from ..mqueue.limits import EVENT_QUEUE_NAMES, QueueSettingNames
from ..v1 import serialize_v1_event

#: Largest serialized event, in bytes, of a queue opened with the defaults.
MAX_EVENT_SIZE = 102400
#: Capacity, in messages, of a queue opened with the defaults.
MAX_QUEUE_SIZE = 10000

T = TypeVar("T")


class EventQueue(Generic[T]):
    """A queue that carries events to the publisher daemon on this host.

    :param name: the queue's name; the POSIX queue is ``/events-<name>``. It
        picks the publisher (``--queue-name``), and so the pipeline.
    :param event_serializer: ``Callable[[event], bytes]``;
        :func:`serialize_v1_event` (the default) or :func:`serialize_v2_event`.
    :param max_messages: capacity if the queue has to be created.
    :param max_message_size: largest message if the queue has to be created.
    :param put_timeout: seconds ``put`` may wait for room in a full queue;
        ``0`` (the default) never blocks.
    :param mode: the queue's permission bits (default 0600). A queue this
        creates gets exactly these whatever the umask; an existing one of ours
        with more is narrowed to them; another user's is refused unless it is
        shared with one of our groups and ``mode`` gives the group access
        (``0o660``), see :mod:`baseplate_events.mqueue.access`.
    :param setting_names: how the caller's configuration spells the size and
        mode settings, for error messages (default: these parameters' names).

    An existing queue keeps its own size; :attr:`max_message_size` is the real one.

    :raises QueueLimitError: the kernel refused a queue of that size; the
        message gives the limits and how to raise them.
    :raises QueueAccessError: the queue belongs to another user who has not
        shared it with us as ``mode`` allows.
    :raises QueuesUnsupportedError: the platform has no POSIX message queues.
    """

    def __init__(
        self,
        name: str,
        event_serializer: Callable[[T], bytes] = serialize_v1_event,  # type: ignore[assignment]
        *,
        max_messages: int = MAX_QUEUE_SIZE,
        max_message_size: int = MAX_EVENT_SIZE,
        put_timeout: float = 0.0,
        mode: int = DEFAULT_MODE,
        setting_names: QueueSettingNames = EVENT_QUEUE_NAMES,
    ) -> None:
        if put_timeout is None or put_timeout < 0:
            raise ValueError(f"put_timeout: expected seconds >= 0, got {put_timeout!r}")
        self.name = name
        self.queue = MessageQueue(
            "/events-" + name,
            max_messages=max_messages,
            max_message_size=max_message_size,
            mode=mode,
            setting_names=setting_names,
        )
        self.serialize_event = event_serializer
        self.put_timeout = put_timeout
        self.max_message_size = self.queue.max_message_size
        self.max_messages = self.queue.max_messages

    def put(self, event: T) -> None:
        """Serialize ``event`` and add it to the queue.

        :raises EventSerializationError: the serializer could not encode it;
            nothing was queued.
        :raises EventTooLargeError: the serialized event exceeds the queue's
            message size.
        :raises EventQueueFullError: the queue stayed full for ``put_timeout``
            seconds: the publisher is not keeping up.
        """
        # Every name here is one attribute load; the size limit and the
        # serializer were settled in __init__, and MessageQueue.put's first
        # step is the bare non-blocking mq_send.
        serialized = self.serialize_event(event)
        if len(serialized) > self.max_message_size:
            raise EventTooLargeError(len(serialized), self.max_message_size)
        try:
            self.queue.put(serialized, self.put_timeout)
        except TimedOutError:
            raise EventQueueFullError(self.queue.name, self.max_messages) from None

    def put_serialized(self, serialized: bytes) -> None:
        """Queue bytes that are already serialized (the size and fullness rules apply)."""
        if len(serialized) > self.max_message_size:
            raise EventTooLargeError(len(serialized), self.max_message_size)
        try:
            self.queue.put(serialized, timeout=self.put_timeout)
        except TimedOutError:
            raise EventQueueFullError(self.queue.name, self.max_messages) from None

    # baseplate's ContextFactory: ``baseplate.add_to_context("events_v2", queue)``
    def make_object_for_context(self, name: str, span: Any) -> "EventQueue[T]":
        """Return this queue, so that it is ``context.<name>`` in every request."""
        return self

    # baseplate's config.Parser, for ``parse_config({"events": queue})``
    def parse(self, key_path: str, raw_config: Any) -> "EventQueue[T]":
        """Return this queue, so that ``parse_config({"events": queue})`` keeps it as it is."""
        return self

    def close(self) -> None:
        """Close the queue descriptor (the queue itself stays for the publisher)."""
        self.queue.close()

    def __enter__(self) -> "EventQueue[T]":
        return self

    def __exit__(self, *exc_info: Optional[Any]) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<EventQueue {self.name!r} max_messages={self.max_messages} "
            f"max_message_size={self.max_message_size}>"
        )
