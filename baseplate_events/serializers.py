"""Serializers: an event object in, the bytes of one queue message out.

A serializer is any ``Callable[[T], bytes]``. ``serialize_v1_event`` writes the
legacy schemaless JSON; ``serialize_v2_event`` writes a Thrift struct exactly
as Thrift's ``TJSONProtocol`` does (see :mod:`baseplate_events.tjson`).
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, TypeVar

from . import tjson
from .errors import EventSerializationError
from .event import Event

T = TypeVar("T")
Serializer = Callable[[T], bytes]

_encode_v1 = json.JSONEncoder(allow_nan=False).encode


def serialize_v1_event(event: Event) -> bytes:
    """Serialize a legacy :class:`~baseplate_events.Event` to JSON bytes.

    The object is ``{"event_topic", "event_type", "event_ts", "uuid",
    "payload"}``, written as baseplate.py writes it.

    :raises EventSerializationError: a payload value JSON cannot encode (a
        ``datetime``, a ``set``, NaN…); the message names the field.
    """
    if not isinstance(event, Event):
        raise EventSerializationError(
            "event",
            "serialize_v1_event expects a baseplate_events.Event, "
            f"got {type(event).__name__}",
        )
    document = {
        "event_topic": event.topic,
        "event_type": event.event_type,
        "event_ts": event.timestamp,
        "uuid": str(event.id),
        "payload": event.payload,
    }
    try:
        return _encode_v1(document).encode("ascii")
    except (TypeError, ValueError) as exc:
        _explain_v1(document, "event")
        raise EventSerializationError("event", str(exc)) from exc


def _explain_v1(value: Any, path: str) -> None:
    """Find the first value JSON cannot encode and raise naming its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise EventSerializationError(
                    f"{path}", f"key {key!r} is a {type(key).__name__}; JSON keys must be strings"
                )
            _explain_v1(item, f"{path}.{key}" if path != "event" else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _explain_v1(item, f"{path}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise EventSerializationError(path, f"{value!r} cannot be written as JSON")
    elif not isinstance(value, (str, int, float, bool)) and value is not None:
        raise EventSerializationError(
            path, f"a {type(value).__name__} cannot be written as JSON"
        )


def serialize_v2_event(event: Any) -> bytes:
    """Serialize a Thrift struct for the v2 event pipeline.

    The bytes are exactly those of Thrift's ``TJSONProtocol`` for every input
    it writes as valid JSON; non-finite doubles become ``"NaN"`` /
    ``"Infinity"`` and control characters are escaped, so the output is
    always valid JSON.

    :raises EventSerializationError: a field holds a value of the wrong type;
        the message names the field and the value's type.
    """
    return tjson.encode(event)
