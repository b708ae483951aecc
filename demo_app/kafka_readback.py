"""``python -m demo_app --sink kafka``: what reached Kafka, in the rows the summary reads.

The runner's summary (:mod:`demo_app.report`) wants, per uuid, the version,
the event's own time, the time the collector had it and how many times it
arrived. With the SQLite sink those come from the collector's
``/api/events``; here they come from the topics, read back from the start:
the key is the uuid, the message timestamp the producer's create time (the
collector's receipt), and the event's time is read from its JSON (v1
``event_ts``; v2 and 2j, Thrift's ``client_timestamp`` field).
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Mapping, Optional

from .event_schemas.event.ttypes import Event

from .tansu import Record

#: Thrift's field id of ``client_timestamp`` in the demo's ``Event``, as TJSON spells it.
_CLIENT_TIMESTAMP_ID = str(next(spec[0] for spec in Event.thrift_spec
                                if spec and spec[2] == "client_timestamp"))


def event_time_ms(version: str, raw: bytes) -> Optional[int]:
    """The event's own timestamp in ms, or None if it has none."""
    document = json.loads(raw)
    if version == "1":
        value = document.get("event_ts")
    else:
        value = document.get(_CLIENT_TIMESTAMP_ID, {}).get("i64")
    return value if type(value) is int else None


def stored_rows(records: Iterable[Record], topics: Mapping[str, str]) -> Dict[str, Dict[str, Any]]:
    """uuid → {version, timestamp_ms, received_ms, receipts}, the first copy's times.

    :param topics: stream (``v1``, ``v2``, ``v2j``) → topic.
    """
    versions = {topic: stream[1:] for stream, topic in topics.items()}
    rows: Dict[str, Dict[str, Any]] = {}
    for record in records:
        if record.key is None or record.value is None or record.topic not in versions:
            continue
        uuid = record.key.decode()
        row = rows.get(uuid)
        if row is not None:
            row["receipts"] += 1
            continue
        version = versions[record.topic]
        rows[uuid] = {"uuid": uuid, "version": version, "receipts": 1,
                      "timestamp_ms": event_time_ms(version, record.value),
                      "received_ms": record.timestamp_ms}
    return rows
