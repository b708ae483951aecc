"""The development sink: each event becomes one JSON log line instead of a queue message.

Chosen with ``events.sink = log`` (Pyramid) or ``EVENTS_SINK = "log"``
(Flask), and the default where the platform has no POSIX message queues
(macOS). Everything before the send still runs, as in production: fillers,
auto-fill, serialization, the size check against the configured
``max_message_size`` and the transactional decision. Only the last step
differs: the bytes that would have been queued are logged at INFO on the
``baseplate_events.events`` logger, as::

    {"queue": "/events-v2", "event": {"1": {"str": "shop"}, ...}}

where ``event`` is the queue message itself (TJSON, keyed by field id).
"""
from __future__ import annotations

import json
import logging

from ..errors import EventTooLargeError

__all__ = ["LogSink"]

logger = logging.getLogger("baseplate_events.events")


class LogSink:
    """Log serialized events; has the ``put_serialized`` and size of a queue."""

    def __init__(self, queue_name: str, max_message_size: int) -> None:
        #: The full name of the queue these events would have gone to.
        self.name = "/events-" + queue_name
        #: The configured size limit, checked as the queue would check it.
        self.max_message_size = max_message_size
        self._prefix = '{"queue": ' + json.dumps(self.name) + ', "event": '

    def put_serialized(self, serialized: bytes) -> None:
        """Write one log line holding the event's queue message.

        :raises EventTooLargeError: a queue of the configured size would refuse it.
        """
        if len(serialized) > self.max_message_size:
            raise EventTooLargeError(len(serialized), self.max_message_size)
        # The serializers only ever produce valid JSON, so the message is
        # spliced in as it is rather than parsed and dumped again.
        logger.info("%s%s}", self._prefix, serialized.decode("utf-8", "replace"))

    def close(self) -> None:
        """Nothing to close; here so that a sink is closed the same way as a queue."""

    def __repr__(self) -> str:
        return f"<LogSink {self.name} max_message_size={self.max_message_size}>"
