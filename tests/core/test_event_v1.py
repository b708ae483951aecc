"""Legacy v1 events: Event, FieldKind and the JSON layout baseplate writes."""
from __future__ import annotations

import datetime
import json
import types
import uuid
from unittest import mock

import pytest

from baseplate_events import Event, EventSerializationError, FieldKind, serialize_v1_event


EVENT_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
WHEN = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
HEAD = (
    b'{"event_topic": "t", "event_type": "e", "event_ts": 1704164645000, '
    b'"uuid": "12345678-1234-5678-1234-567812345678", "payload": '
)
KINDS = [FieldKind.NORMAL, FieldKind.OBFUSCATED, FieldKind.HIGH_CARDINALITY]


def fixed_event() -> Event:
    return Event("t", "e", timestamp=WHEN, id=EVENT_ID)


def test_serialized_layout_is_baseplates():
    """Keys, order, separators, types and the whole-second event_ts are exactly baseplate.py's."""
    event_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)
    event = Event("topic", "type", timestamp=when, id=event_id)
    event.set_field("a", 1)
    expected = (
        b'{"event_topic": "topic", "event_type": "type", "event_ts": 1704164645000, '
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
    event = fixed_event()
    with pytest.warns(DeprecationWarning):
        event.set_field("ip", "1.2.3.4", obfuscate=True)
    assert HEAD + b'{"obfuscated_data": {"ip": "1.2.3.4"}}}' == serialize_v1_event(event)


def test_get_field_reads_back():
    """get_field returns a set value whatever its kind, and None for a missing one."""
    event = Event("t", "e")
    event.set_field("a", 5)
    event.set_field("ip", "x", kind=FieldKind.OBFUSCATED)
    event.set_field("url", "/r", kind=FieldKind.HIGH_CARDINALITY)
    assert [5, "x", "/r", None] == [
        event.get_field(key) for key in ("a", "ip", "url", "missing")
    ]


def test_get_field_never_returns_a_section():
    """A section name is not a field: get_field("obfuscated_data") is None, as in baseplate."""
    event = Event("t", "e")
    event.set_field("ip", "x", kind=FieldKind.OBFUSCATED)
    assert None is event.get_field("obfuscated_data")


def test_get_field_kind_filters():
    """With kind=, only a field of that kind is returned."""
    event = Event("t", "e")
    event.set_field("ip", "x", kind=FieldKind.OBFUSCATED)
    assert ["x", None, None] == [event.get_field("ip", kind=kind) for kind in (
        FieldKind.OBFUSCATED, FieldKind.NORMAL, FieldKind.HIGH_CARDINALITY)]


def _section(kind: FieldKind, body: bytes) -> bytes:
    if kind.value is None:
        return b"{" + body + b"}"
    return b'{"' + kind.value.encode() + b'": {' + body + b"}}"


@pytest.mark.parametrize("first", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("second", KINDS, ids=lambda k: k.name)
def test_setting_a_key_again_moves_it_to_the_last_kind(first, second):
    """A key lives in one section only: the kind it was last set under."""
    event = fixed_event()
    event.set_field("ip", "10.0.0.1", kind=first)
    event.set_field("ip", "10.0.0.2", kind=second)
    assert HEAD + _section(second, b'"ip": "10.0.0.2"') + b"}" == serialize_v1_event(event)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("empty", [None, ""], ids=["None", "empty"])
def test_none_or_empty_neither_removes_nor_moves(kind, empty):
    """Setting a key to None or "" under another kind is a no-op."""
    event = fixed_event()
    event.set_field("ip", "10.0.0.1", kind=FieldKind.OBFUSCATED)
    event.set_field("ip", empty, kind=kind)
    assert HEAD + b'{"obfuscated_data": {"ip": "10.0.0.1"}}}' == serialize_v1_event(event)


def test_key_order_is_baseplates():
    """Fields keep the place they were first set; a section stands where its first key does."""
    event = fixed_event()
    event.set_field("a", 1)
    event.set_field("ip", "x", kind=FieldKind.OBFUSCATED)
    event.set_field("b", 2)
    event.set_field("url", "/r", kind=FieldKind.HIGH_CARDINALITY)
    event.set_field("a", 3, kind=FieldKind.HIGH_CARDINALITY)
    event.set_field("geo", "de", kind=FieldKind.OBFUSCATED)
    event.set_field("ip", "y")
    expected = HEAD + (
        b'{"interana_excluded": {"a": 3, "url": "/r"}, "ip": "y", "b": 2, '
        b'"obfuscated_data": {"geo": "de"}}}'
    )
    assert expected == serialize_v1_event(event)


def test_normal_field_named_like_a_section_is_refused():
    """A NORMAL field called obfuscated_data beside obfuscated fields is an error, not a merge."""
    event = fixed_event()
    event.set_field("obfuscated_data", "plain")
    event.set_field("ip", "x", kind=FieldKind.OBFUSCATED)
    with pytest.raises(EventSerializationError) as info:
        serialize_v1_event(event)
    assert (
        "payload.obfuscated_data: a NORMAL field has the name of the section of OBFUSCATED "
        "fields such as 'ip'; rename the field" == str(info.value)
    )


def test_explicit_timestamp_is_whole_seconds():
    """An explicit timestamp's sub-second part is dropped, as baseplate's timegm does."""
    when = datetime.datetime(1970, 1, 1, 0, 0, 1, 999999, tzinfo=datetime.timezone.utc)
    assert 1000 == Event("t", "e", timestamp=when).timestamp


def test_default_timestamp_keeps_milliseconds():
    """The default "now" is in milliseconds, as baseplate's time.time() * 1000."""
    stamps = {Event("t", "e").timestamp % 1000 for _ in range(50)}
    assert stamps != {0}


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
    """An object without serialize() is refused with a clear error."""
    with pytest.raises(EventSerializationError) as info:
        serialize_v1_event({"a": 1})
    assert (
        "event: serialize_v1_event expects a baseplate_events.Event (or an object with a "
        "serialize() method), got dict" == str(info.value)
    )


class CustomEvent(Event):
    def serialize(self):
        return '{"custom": true}'


class Serializable:
    def __init__(self, output):
        self.output = output

    def serialize(self):
        return self.output


def test_subclass_serialize_is_used():
    """An Event subclass that overrides serialize() gets its own output, as bytes."""
    assert b'{"custom": true}' == serialize_v1_event(CustomEvent("t", "e"))


def test_a_mock_with_autospec_event_is_serialized_by_its_own_serialize():
    """mock.Mock(autospec=Event), as baseplate 0.30's tests make, gives its serialize()'s JSON."""
    event = mock.Mock(autospec=Event)
    event.serialize.return_value = '{"event_topic": "t", "payload": {}}'
    assert b'{"event_topic": "t", "payload": {}}' == serialize_v1_event(event)


def test_serialize_set_on_the_instance_is_called():
    """A serialize attribute of the object itself (not of its class) is called."""
    event = types.SimpleNamespace(serialize=lambda: '{"on": "instance"}')
    assert b'{"on": "instance"}' == serialize_v1_event(event)


def test_serialize_set_on_an_event_instance_overrides_the_class():
    """An Event whose instance has its own serialize() gets that output, not Event's."""
    event = Event("t", "e")
    event.serialize = lambda: '{"replaced": 1}'  # type: ignore[method-assign]
    assert b'{"replaced": 1}' == serialize_v1_event(event)


def test_a_serialize_that_is_not_callable_is_refused():
    """An object whose serialize is data, not a method, is refused like one without it."""
    with pytest.raises(EventSerializationError) as info:
        serialize_v1_event(types.SimpleNamespace(serialize='{"a": 1}'))
    assert (
        "event: serialize_v1_event expects a baseplate_events.Event (or an object with a "
        "serialize() method), got SimpleNamespace" == str(info.value)
    )


@pytest.mark.parametrize("output", ['{"a": "\u00e9"}', '{"a": "\u00e9"}'.encode()])
def test_any_object_with_serialize_is_accepted(output):
    """A non-Event whose serialize() returns str or bytes holding a JSON object is taken."""
    assert '{"a": "\u00e9"}'.encode() == serialize_v1_event(Serializable(output))


@pytest.mark.parametrize(
    "output, problem",
    [
        ("[1, 2]", "returned a JSON list; it must be one JSON object"),
        ("42", "returned a JSON int; it must be one JSON object"),
        ('{"a": 1} trailing', "did not return JSON (Extra data: line 1 column 10 (char 9))"),
        ('{"a": NaN}', "did not return JSON (NaN is not JSON)"),
        (None, "returned a NoneType; it must return str or bytes"),
        (
            '{"a": "\ud800"}',
            "returned text that is not UTF-8 ('utf-8' codec can't encode character '\\ud800' "
            "in position 7: surrogates not allowed)",
        ),
        ({"a": 1}, "returned a dict; it must return str or bytes"),
        (
            b'{"a": "\xff"}',
            "returned bytes that are not UTF-8 ('utf-8' codec can't decode byte 0xff in "
            "position 7: invalid start byte)",
        ),
    ],
)
def test_serialize_output_that_is_not_one_json_object_is_refused(output, problem):
    """serialize() output that would spoil a comma-joined batch raises, naming the class."""
    with pytest.raises(EventSerializationError) as info:
        serialize_v1_event(Serializable(output))
    assert "Serializable.serialize(): " + problem == str(info.value)
