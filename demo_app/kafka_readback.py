"""``python -m demo_app --sink kafka``: what reached Kafka, in the rows the summary reads.

The runner's summary (:mod:`demo_app.report`) wants, per uuid, the version,
the event's own time, the time the collector had it and how many times it
arrived. With the SQLite sink those come from the collector's
``/api/events``; here they come from the topics, read back from the start by
``baseplate-events-tail``'s reader (:mod:`baseplate_events.collector.tail`):
the key is the uuid, the message timestamp the producer's create time (the
collector's receipt), and the event's time is its field (v1 ``event_ts``;
v2 and 2j, the sample schema's ``client_timestamp``).
"""
from __future__ import annotations

import threading
from typing import Any, Dict, Mapping, Optional

from baseplate_events.collector.decode.schema import struct_shape
from baseplate_events.collector.sinks.kafka import KafkaSettings
from baseplate_events.collector.tail import TailRequest
from baseplate_events.collector.tail.kafka import KafkaReader
from baseplate_events.collector.tail.output import describe

from .event_schemas.event.ttypes import Event

_SCHEMA = struct_shape(Event)


def stored_rows(bootstrap: str, topics: Mapping[str, str],
                idle: float = 0.3) -> Dict[str, Dict[str, Any]]:
    """uuid → {version, timestamp_ms, received_ms, receipts}, the first copy's times.

    :param topics: stream (``v1``, ``v2``, ``v2j``) → topic.
    """
    reader = KafkaReader(KafkaSettings(bootstrap, dict(topics)))
    rows: Dict[str, Dict[str, Any]] = {}
    for event in reader.events(TailRequest(last=None, idle=idle), threading.Event()):
        if event is None:
            continue
        row = rows.get(event.uuid)
        if row is not None:
            row["receipts"] += 1
            continue
        fields = describe(event, _SCHEMA).get("fields") or {}
        timestamp: Optional[Any] = fields.get("event_ts" if event.stream == "v1"
                                              else "client_timestamp")
        rows[event.uuid] = {"uuid": event.uuid, "version": event.stream[1:], "receipts": 1,
                            "timestamp_ms": timestamp if type(timestamp) is int else None,
                            "received_ms": event.received_ms}
    return rows
