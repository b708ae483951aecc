"""Legacy schemaless (v1) events: ``Event`` and ``FieldKind``.

A v1 event is a topic, a type, a timestamp, a uuid and a free-form payload;
:func:`baseplate_events.serializers.serialize_v1_event` turns it into the JSON
object baseplate.py writes to the queue.
"""
from __future__ import annotations

import calendar
import datetime
import enum
import uuid
import warnings
from typing import Any, Dict, Optional


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

    :param topic: the event topic (``event_topic`` on the wire).
    :param event_type: the event type (``event_type`` on the wire).
    :param timestamp: when it happened, a UTC (or naive, taken as UTC)
        ``datetime``; defaults to now.
    :param id: the event's UUID; defaults to a fresh ``uuid4``.
    :raises ValueError: the timestamp carries a non-UTC offset.
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
            self.timestamp = _to_millis(timestamp)
        else:
            self.timestamp = _to_millis(datetime.datetime.now(datetime.timezone.utc))
        self.id = id or uuid.uuid4()
        self.payload: Dict[str, Any] = {}

    def get_field(self, key: str, kind: FieldKind = FieldKind.NORMAL) -> Any:
        """The value of a field, or ``None`` if it is not set."""
        if kind.value is None:
            return self.payload.get(key)
        return self.payload.get(kind.value, {}).get(key)

    def set_field(
        self,
        key: str,
        value: Any,
        obfuscate: bool = False,
        kind: FieldKind = FieldKind.NORMAL,
    ) -> None:
        """Set a field of the payload.

        ``None`` and ``""`` are skipped (the field stays unset); ``0`` and
        ``False`` are kept.

        :param obfuscate: deprecated; use ``kind=FieldKind.OBFUSCATED``.
        :param kind: where the field goes (:class:`FieldKind`).
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
        if kind.value is None:
            self.payload[key] = value
        else:
            self.payload.setdefault(kind.value, {})[key] = value

    def serialize(self) -> bytes:
        """This event as the v1 wire format; see :func:`serialize_v1_event`."""
        from .serializers import serialize_v1_event

        return serialize_v1_event(self)

    def __repr__(self) -> str:
        return f"<Event {self.topic}/{self.event_type} {self.id}>"
