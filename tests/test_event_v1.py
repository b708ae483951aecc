"""Legacy v1 events: Event, FieldKind and the JSON layout baseplate writes."""
from __future__ import annotations

import datetime
import json
import uuid

import pytest

from baseplate_events import Event, EventSerializationError, FieldKind, serialize_v1_event


def test_serialized_layout_is_baseplates():
    """Keys, order, separators and types are exactly baseplate.py's."""
    event_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)
    event = Event("topic", "type", timestamp=when, id=event_id)
    event.set_field("a", 1)
    expected = (
        b'{"event_topic": "topic", "event_type": "type", "event_ts": 1704164645678, '
        b'"uuid": "12345678-1234-5678-1234-567812345678", "payload": {"a": 1}}'
    )
    assert expected == serialize_v1_event(event)
    assert expected == event.serialize()


def test_field_kinds_go_to_their_sections():
    """NORMAL at the top, OBFUSCATED and HIGH_CARDINALITY in their sub-objects."""
    event = Event("t", "e")
    event.set_field("n", "x")
    event.set_field("ip", "10.0.0.1", kind=FieldKind.OBFUSCATED)
    event.set_field("url", "/r/x", kind=FieldKind.HIGH_CARDINALITY)
    assert {
        "n": "x",
        "obfuscated_data": {"ip": "10.0.0.1"},
        "interana_excluded": {"url": "/r/x"},
    } == json.loads(serialize_v1_event(event))["payload"]


def test_none_and_empty_string_are_skipped_zero_and_false_kept():
    """set_field skips None and "", keeps 0 and False."""
    event = Event("t", "e")
    event.set_field("none", None)
    event.set_field("empty", "")
    event.set_field("zero", 0)
    event.set_field("false", False)
    assert {"zero": 0, "false": False} == event.payload


def test_obfuscate_flag_warns_and_obfuscates():
    """obfuscate=True still works, with a DeprecationWarning."""
    event = Event("t", "e")
    with pytest.warns(DeprecationWarning):
        event.set_field("ip", "1.2.3.4", obfuscate=True)
    assert {"obfuscated_data": {"ip": "1.2.3.4"}} == event.payload


def test_get_field_reads_back():
    """get_field returns a set value, None for a missing one, by kind."""
    event = Event("t", "e")
    event.set_field("a", 5)
    event.set_field("ip", "x", kind=FieldKind.OBFUSCATED)
    assert 5 == event.get_field("a")
    assert None is event.get_field("missing")
    assert "x" == event.get_field("ip", kind=FieldKind.OBFUSCATED)


def test_non_utc_timestamp_raises():
    """A timestamp with a non-UTC offset raises ValueError."""
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    with pytest.raises(ValueError) as info:
        Event("t", "e", timestamp=when)
    assert "timestamp: 2024-01-01T00:00:00+02:00 is not in UTC" == str(info.value)


def test_naive_timestamp_is_taken_as_utc():
    """A naive datetime counts as UTC."""
    event = Event("t", "e", timestamp=datetime.datetime(1970, 1, 1, 0, 0, 1))
    assert 1000 == event.timestamp


def test_defaults_fill_timestamp_and_uuid():
    """Without timestamp and id, the event gets now (ms) and a uuid4."""
    before = int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)
    event = Event("t", "e")
    after = int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)
    assert before - 1 <= event.timestamp <= after + 1
    assert 4 == event.id.version


def test_nan_is_refused_naming_the_field():
    """NaN is not JSON: the error names the field instead of writing invalid JSON."""
    event = Event("t", "e")
    event.set_field("ratio", float("nan"))
    with pytest.raises(EventSerializationError) as info:
        serialize_v1_event(event)
    assert "payload.ratio: nan cannot be written as JSON" == str(info.value)


def test_set_value_is_refused_naming_the_field():
    """A set is not JSON-encodable: the error names the field and the type."""
    event = Event("t", "e")
    event.set_field("tags", {"a"}, kind=FieldKind.HIGH_CARDINALITY)
    with pytest.raises(EventSerializationError) as info:
        serialize_v1_event(event)
    assert "payload.interana_excluded.tags: a set cannot be written as JSON" == str(info.value)


def test_non_event_is_refused():
    """serialize_v1_event wants a baseplate_events.Event."""
    with pytest.raises(EventSerializationError) as info:
        serialize_v1_event({"a": 1})
    assert (
        "event: serialize_v1_event expects a baseplate_events.Event, got dict" == str(info.value)
    )
