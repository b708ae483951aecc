"""Fuzzing the v1 serializer: valid JSON that round-trips, or a clear EventSerializationError."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from baseplate_events import Event, EventSerializationError, FieldKind, serialize_v1_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
any_values = (
    json_values
    | st.floats()
    | st.sets(st.integers(), max_size=3)
    | st.binary()
    | st.builds(object)
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(min_size=1), json_values, max_size=6), st.sampled_from(FieldKind))
def test_json_values_round_trip(fields, kind):
    """Any JSON-able payload serializes to ASCII JSON that decodes to the same payload."""
    event = Event("topic", "type")
    for key, value in fields.items():
        event.set_field(key, value, kind=kind)
    message = serialize_v1_event(event)
    message.decode("ascii")
    kept = {key: value for key, value in fields.items() if value is not None and value != ""}
    expected = kept if kind.value is None or not kept else {kind.value: kept}
    assert expected == json.loads(message)["payload"]


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1), any_values)
def test_any_value_is_json_or_a_named_error(key, value):
    """Whatever the value, the result is valid JSON or an error naming the field."""
    event = Event("topic", "type")
    event.set_field(key, value)
    try:
        message = serialize_v1_event(event)
    except EventSerializationError as exc:
        assert str(exc).startswith("payload." + key)
    else:
        json.loads(message)
