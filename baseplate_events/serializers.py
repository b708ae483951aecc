"""Serializers: an event object in, the bytes of one queue message out.

A serializer is any ``Callable[[T], bytes]``. ``serialize_v1_event`` writes the
legacy schemaless JSON; ``serialize_v2_event`` writes a Thrift struct exactly
as Thrift's ``TJSONProtocol`` does (see :mod:`baseplate_events.tjson.encode`).
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, TypeVar

from .tjson import encode as tjson
from .errors import EventSerializationError
from .v1 import Event

T = TypeVar("T")
Serializer = Callable[[T], bytes]

_encode_v1 = json.JSONEncoder(allow_nan=False).encode


def serialize_v1_event(event: Any) -> bytes:
    """Serialize a legacy v1 event to JSON bytes: ``event.serialize()``, as in baseplate.py.

    For a :class:`~baseplate_events.Event` the object is ``{"event_topic",
    "event_type", "event_ts", "uuid", "payload"}``, written as baseplate.py
    writes it. Any other object with a ``serialize()`` method (an ``Event``
    subclass that overrides it included) is asked for its own output, which
    must be ``str`` or ``bytes`` holding one JSON object: the publisher joins
    v1 events with commas, so one message that is not JSON would spoil its
    whole batch.

    :param event: a :class:`~baseplate_events.Event`, or an object with a
        ``serialize()`` method.
    :returns: the bytes of one queue message.
    :raises EventSerializationError: a payload value JSON cannot encode (a
        ``datetime``, a ``set``, NaN...; the message names the field), an
        object without ``serialize()``, or a ``serialize()`` whose output is not
        one JSON object.
    """
    # Looked up on the instance, as baseplate.py does: a serialize set on the
    # object itself (a mock.Mock(autospec=Event) in a test) is the one called.
    method = getattr(event, "serialize", None)
    if getattr(method, "__func__", None) is Event.serialize:
        return encode_v1(event)
    if method is None or not callable(method):
        raise EventSerializationError(
            "event",
            "serialize_v1_event expects a baseplate_events.Event (or an object with a "
            f"serialize() method), got {type(event).__name__}",
        )
    output = method()
    return _checked_v1(output, type(event).__name__)


def encode_v1(event: Event) -> bytes:
    """The v1 JSON of an :class:`~baseplate_events.Event` (what its ``serialize()`` returns).

    :raises EventSerializationError: as :func:`serialize_v1_event`.
    """
    document = {
        "event_topic": event.topic,
        "event_type": event.event_type,
        "event_ts": event.timestamp,
        "uuid": str(event.id),
        "payload": event.grouped_payload(),
    }
    try:
        return _encode_v1(document).encode("ascii")
    except (TypeError, ValueError) as exc:
        _explain_v1(document, "event")
        raise EventSerializationError("event", str(exc)) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _checked_v1(output: Any, owner: str) -> bytes:
    """``output`` of ``owner.serialize()`` as bytes, if it is one JSON object."""
    where = f"{owner}.serialize()"
    if isinstance(output, str):
        text = output
    elif isinstance(output, (bytes, bytearray, memoryview)):
        try:
            text = bytes(output).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventSerializationError(where, f"returned bytes that are not UTF-8 ({exc})") \
                from None
    else:
        raise EventSerializationError(
            where, f"returned a {type(output).__name__}; it must return str or bytes"
        )
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EventSerializationError(where, f"returned text that is not UTF-8 ({exc})") from None
    except ValueError as exc:
        raise EventSerializationError(where, f"did not return JSON ({exc})") from None
    if not isinstance(document, dict):
        raise EventSerializationError(
            where, f"returned a JSON {type(document).__name__}; it must be one JSON object"
        )
    return data


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

    :param event: an instance of a class generated by the Thrift compiler.
    :returns: the bytes of one queue message.
    :raises EventSerializationError: a field holds a value of the wrong type;
        the message names the field and the value's type.

    ::

        >>> serialize_v2_event(Event(source="shop", client_timestamp=1))
        b'{"1":{"str":"shop"},"4":{"i64":1}}'
    """
    return tjson.encode(event)
