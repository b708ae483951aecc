"""Legacy schemaless (v1) events: ``Event``, ``FieldKind`` and their JSON encoding.

A v1 event is a topic, a type, a timestamp, a uuid and a free-form payload;
:func:`serialize_v1_event` turns it (or any object with a ``serialize()``
method) into the JSON object baseplate.py writes to the queue. The whole v1
encoding lives here, so ``Event.serialize`` needs no other module.
"""
from __future__ import annotations

import calendar
import datetime
import enum
import json
import math
import uuid
import warnings
from typing import Any, Dict, Optional

from .errors import EventSerializationError


class FieldKind(enum.Enum):
    """Where in the payload :meth:`Event.set_field` puts a field."""

    #: at the top level of ``payload``
    NORMAL = None
    #: under ``payload["obfuscated_data"]``: personal data the pipeline obfuscates
    OBFUSCATED = "obfuscated_data"
    #: under ``payload["interana_excluded"]``: too many distinct values to index
    HIGH_CARDINALITY = "interana_excluded"


def _to_millis(timestamp: datetime.datetime) -> int:
    return calendar.timegm(timestamp.utctimetuple()) * 1000 + timestamp.microsecond // 1000


class Event:
    """A legacy schemaless event.

    The payload is kept as baseplate.py keeps it: one flat dict of fields in
    the order they were first set, plus the :class:`FieldKind` of each. A key
    lives in one section only: setting it again under another kind moves it,
    and the last kind set wins. The sections (``obfuscated_data``,
    ``interana_excluded``) appear only in :meth:`serialize`, each where its
    first key stands.

    :param topic: the event topic (``event_topic`` on the wire).
    :param event_type: the event type (``event_type`` on the wire).
    :param timestamp: when it happened, a UTC (or naive, taken as UTC)
        ``datetime``. Written in whole seconds (times 1000), as baseplate.py
        does for an explicit timestamp. Defaults to now, in milliseconds.
    :param id: the event's UUID; defaults to a fresh ``uuid4``.
    :raises ValueError: the timestamp carries a non-UTC offset.
    :raises TypeError: the timestamp is not a ``datetime``.

    Example::

        event = Event("account", "login")
        event.set_field("user_id", 42)
        event.set_field("ip", "10.0.0.1", kind=FieldKind.OBFUSCATED)
        queue.put(event)
    """

    def __init__(
        self,
        topic: str,
        event_type: str,
        timestamp: Optional[datetime.datetime] = None,
        id: Optional[uuid.UUID] = None,  # noqa: A002 - baseplate's signature
    ) -> None:
        self.topic = topic
        self.event_type = event_type
        if timestamp is not None:
            if not isinstance(timestamp, datetime.datetime):
                raise TypeError(
                    f"timestamp: expected a datetime, got {type(timestamp).__name__}"
                )
            offset = timestamp.utcoffset()
            if offset is not None and offset != datetime.timedelta(0):
                raise ValueError(f"timestamp: {timestamp.isoformat()} is not in UTC")
            # baseplate.py drops the sub-second part of an explicit timestamp
            # (timegm of the time tuple); v1 consumers expect its bytes.
            self.timestamp = calendar.timegm(timestamp.utctimetuple()) * 1000
        else:
            self.timestamp = _to_millis(datetime.datetime.now(datetime.timezone.utc))
        self.id = id or uuid.uuid4()
        #: every field, flat, in the order first set (baseplate's layout)
        self.payload: Dict[str, Any] = {}
        #: the kind of each key of :attr:`payload`
        self.payload_types: Dict[str, FieldKind] = {}

    def get_field(self, key: str, kind: Optional[FieldKind] = None) -> Any:
        """The value of a field whatever its kind, or ``None`` if it is not set.

        :param kind: when given, only a field of that kind is returned (a field
            set under another kind reads as ``None``).
        """
        if kind is not None and self.payload_types.get(key) is not kind:
            return None
        return self.payload.get(key)

    def set_field(
        self,
        key: str,
        value: Any,
        obfuscate: bool = False,
        kind: FieldKind = FieldKind.NORMAL,
    ) -> None:
        """Set a field of the payload, in the section of its ``kind``.

        ``None`` and ``""`` are skipped: the field keeps whatever value and
        kind it had. ``0`` and ``False`` are kept. Setting a key again
        replaces its value and moves it to the new kind's section.

        :param obfuscate: deprecated; use ``kind=FieldKind.OBFUSCATED``.
        :param kind: where the field goes (:class:`FieldKind`).
        :raises TypeError: ``kind`` is not a :class:`FieldKind`.
        """
        if obfuscate:
            warnings.warn(
                "set_field(obfuscate=True) is deprecated; pass kind=FieldKind.OBFUSCATED",
                DeprecationWarning,
                stacklevel=2,
            )
            kind = FieldKind.OBFUSCATED
        if not isinstance(kind, FieldKind):
            raise TypeError(f"kind: expected a FieldKind, got {type(kind).__name__}")
        if value is None or (isinstance(value, str) and value == ""):
            return
        self.payload[key] = value
        self.payload_types[key] = kind

    def grouped_payload(self) -> Dict[str, Any]:
        """The payload as it goes on the wire: NORMAL fields at the top, the
        others under their section, each section created where its first key
        stands (baseplate.py's order).

        :raises EventSerializationError: a NORMAL field has the name of a
            section that other fields need.
        """
        if all(kind is FieldKind.NORMAL for kind in self.payload_types.values()):
            return self.payload
        grouped: Dict[str, Any] = {}
        for key, value in self.payload.items():
            section_name = self.payload_types[key].value
            if section_name is None:
                grouped[key] = value
                continue
            section = grouped.setdefault(section_name, {})
            if self.payload_types.get(section_name) is FieldKind.NORMAL:
                raise EventSerializationError(
                    f"payload.{section_name}",
                    f"a NORMAL field has the name of the section of "
                    f"{self.payload_types[key].name} fields such as {key!r}; rename the field",
                )
            section[key] = value
        return grouped

    def serialize(self) -> bytes:
        """This event as the v1 wire format; see :func:`serialize_v1_event`.

        :raises EventSerializationError: a value JSON cannot encode.
        """
        return encode_v1(self)

    def __repr__(self) -> str:
        return f"<Event {self.topic}/{self.event_type} {self.id}>"


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
