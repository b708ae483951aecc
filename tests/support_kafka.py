"""Kafka test helpers: events for the sink, and a real fatal error in a real producer.

librdkafka ships ``rd_kafka_test_fatal_error()`` for exactly this: it puts a
live producer into the fatal state that a broker would (here, a fenced
epoch), so the sink's recovery runs the code path a real fatal error takes.
confluent-kafka does not bind it, so it is called through ctypes on the
``rd_kafka_t`` handle, the first field after the Python object header of a
``Producer`` (confluent_kafka/src/confluent_kafka.h: ``Handle``).
"""
from __future__ import annotations

import ctypes
import glob
import json
import os
import time
import uuid
from typing import Any

import confluent_kafka

from baseplate_events.collector.sinks import StoredEvent

#: librdkafka's RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, a fatal error for an idempotent producer
INVALID_PRODUCER_EPOCH = 47


def stored_event(version: str = "2j", size: int = 0, **fields: Any) -> StoredEvent:
    """An accepted event with a fresh uuid, padded to about ``size`` bytes of JSON."""
    event_uuid = str(uuid.uuid4())
    document = {"uuid": event_uuid, "action": "test", "pad": "", **fields}
    raw = json.dumps(document, separators=(",", ":"))
    document["pad"] = "x" * max(0, size - len(raw))
    raw_bytes = json.dumps(document, separators=(",", ":")).encode()
    return StoredEvent(uuid=event_uuid, version=version, raw=raw_bytes, document=document,
                       received_ms=int(time.time() * 1000))


def raise_fatal_error(producer: confluent_kafka.Producer, reason: str) -> None:
    """Put ``producer`` into librdkafka's fatal state, as a fenced epoch from a broker would."""
    libs = os.path.join(os.path.dirname(confluent_kafka.__file__), os.pardir,
                        "confluent_kafka.libs", "librdkafka*")
    paths = glob.glob(libs)
    library = ctypes.CDLL(paths[0]) if paths else ctypes.CDLL("librdkafka.so.1")
    library.rd_kafka_test_fatal_error.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    handle = ctypes.c_void_p.from_address(id(producer) + object.__basicsize__).value
    status = library.rd_kafka_test_fatal_error(handle, INVALID_PRODUCER_EPOCH, reason.encode())
    assert 0 == status, f"rd_kafka_test_fatal_error returned {status}"
