"""The process-wide queue every request's events go to: :class:`SharedQueue`.

The last step of a put on the app side: :mod:`baseplate_events.runtime.request_events`
completes and serializes an event, and hands the bytes here, to one
:class:`~baseplate_events.EventQueue` per process (``/events-<queue_name>``)
that the publisher drains. This module knows how to open that queue safely in
a server that forks, and how to tell at start-up that puts are bound to fail.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Optional

from ..errors import MessageQueueError
from ..mqueue.posix import MessageQueue, queues_supported
from .event_queue import EventQueue
from ..mqueue.limits import QueueSettingNames, kernel_limits
from ..serializers import serialize_v2_event
from .settings import EventsSettings, pyramid_key

__all__ = ["SharedQueue"]


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
