"""Assert on the events your views put, without a POSIX queue.

Like structlog's ``capture_logs``: inside :func:`capture_events`, every event
put through a request's ``events_v2`` (Pyramid or Flask) is recorded instead of
being sent, after fillers, auto-fill, serialization, the size check and the
transactional decision, so a test sees exactly what the publisher would::

    from baseplate_events.testing import capture_events

    def test_posting_a_comment_records_it(app):
        with capture_events() as captured:
            app.post("/comments", {"body": "hi"})
        assert ["comment"] == [event.noun for event in captured.events]

With pytest, the same is the ``captured_events`` fixture: installing
baseplate-events registers this module as a pytest plugin (entry point
``pytest11``, named ``baseplate_events.testing``), so no ``conftest.py`` line is
needed, and one that says ``pytest_plugins = ["baseplate_events.testing"]``
still works. No queue is opened while a capture is active.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, List, Type, TypeVar

from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.TSerialization import deserialize

from .runtime.capture import pop_recorder, push_recorder

__all__ = ["CapturedEvent", "CapturedEvents", "capture_events"]

S = TypeVar("S")


@dataclass(frozen=True)
class CapturedEvent:
    """One event as it would have gone onto the queue."""

    #: The struct that was put (after fillers and auto-fill).
    event: Any
    #: The exact bytes of the queue message.
    serialized: bytes

    def json(self) -> Any:
        """The message parsed as JSON (TJSONProtocol: keyed by field id).

        ``{"1": {"str": "shop"}, "4": {"i64": 1764460800123}}``
        """
        return json.loads(self.serialized)

    def decode(self, struct_class: Type[S]) -> S:
        """The message read back into a fresh ``struct_class`` with Thrift's TJSONProtocol.

        :param struct_class: the generated class the event was made from.
        :returns: a new instance, equal to :attr:`event` when the bytes are right.
        """
        return deserialize(struct_class(), self.serialized, TJSONProtocolFactory())  # type: ignore[no-any-return]


class CapturedEvents(List[CapturedEvent]):
    """The events recorded by :func:`capture_events`, in the order they were sent."""

    def record(self, event: Any, serialized: bytes) -> None:
        """Keep one event and its bytes (called by the request-scoped queue)."""
        self.append(CapturedEvent(event, serialized))

    @property
    def events(self) -> List[Any]:
        """The structs that were put."""
        return [captured.event for captured in self]

    @property
    def serialized(self) -> List[bytes]:
        """The queue messages' bytes."""
        return [captured.serialized for captured in self]


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Record, instead of sending, every event put through a request's ``events_v2``.

    ::

        with capture_events() as captured:
            app.post("/cart", {"item": "42"})
        assert ["cart"] == [event.noun for event in captured.events]

    Captures nest: the innermost one records. Errors behave as with a queue:
    an event larger than the configured ``max_message_size`` raises
    ``EventTooLargeError`` (or is logged, under the ``log`` policy), and a
    transactional request that fails records nothing.
    """
    captured = CapturedEvents()
    push_recorder(captured)
    try:
        yield captured
    finally:
        pop_recorder(captured)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture
    def captured_events() -> Iterator[CapturedEvents]:
        """pytest fixture: :func:`capture_events` for the whole test."""
        with capture_events() as captured:
            yield captured
