"""Where events go instead of a queue while a test captures them.

A put's last step, on the app side, is to hand the serialized event to the
process-wide queue (:mod:`baseplate_events.runtime.shared_queue`) or the log sink;
while a :func:`baseplate_events.testing.capture_events` block is active, the
runtime (:mod:`baseplate_events.runtime.request_events`) hands it to the innermost
recorder pushed here instead, and no queue is touched.
"""
from __future__ import annotations

from typing import Any, List, Protocol

__all__ = ["Recorder", "active_recorders", "pop_recorder", "push_recorder"]


class Recorder(Protocol):
    """Where :mod:`baseplate_events.testing` collects events instead of a queue."""

    def record(self, event: Any, serialized: bytes) -> None: ...


#: Active recorders, innermost last; while any is active no queue is touched.
#: Changed in place only, so a module that imported it sees every push and pop.
active_recorders: List[Recorder] = []


def push_recorder(recorder: Recorder) -> None:
    """Send every event to ``recorder`` instead of a queue (for :mod:`baseplate_events.testing`)."""
    active_recorders.append(recorder)


def pop_recorder(recorder: Recorder) -> None:
    """Stop sending events to ``recorder``."""
    active_recorders.remove(recorder)
