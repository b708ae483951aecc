"""Properties of the collector's batch decoding: round-trips, and no crash on any input."""
from __future__ import annotations

import json
import uuid
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baseplate_events import serialize_v2_event
from baseplate_events.collector.decode.batches import (
    EventReader,
    MalformedBatch,
    RefusedEvents,
    decode_batch,
)
from baseplate_events.collector.service.intake import Refused, gunzip_bounded
from baseplate_events.collector.decode.schema import struct_shape
from event_schemas.event.ttypes import Event, Experiment, User

READER = EventReader(struct_shape(Event))

names = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)
events = st.builds(
    Event,
    source=names,
    action=names,
    noun=names,
    client_timestamp=st.integers(min_value=1, max_value=2**63 - 1),
    uuid=st.uuids().map(str),
    user=st.none() | st.builds(User, user_id=st.none() | names, logged_in=st.booleans()),
    experiments=st.none() | st.lists(st.builds(Experiment, id=st.integers(-(2**63), 2**63 - 1)),
                                     max_size=3),
    tags=st.none() | st.dictionaries(names, st.text(max_size=10), max_size=3),
    value=st.none() | st.floats(allow_nan=False),
)


def v2_body(batch: List[Event]) -> bytes:
    items = [serialize_v2_event(e) for e in batch]
    return b'{"1":{"lst":["rec",%d,' % len(items) + b",".join(items) + b"]}}"


@settings(max_examples=60, deadline=None)
@given(st.lists(events, min_size=1, max_size=5), st.sampled_from(["2", "2j"]))
def test_any_batch_of_valid_events_round_trips(batch: List[Event], version: str) -> None:
    """What serialize_v2_event writes, in either batch format, decodes to the same events."""
    if version == "2":
        body = v2_body(batch)
    else:
        body = b"[" + b",".join(serialize_v2_event(e) for e in batch) + b"]"
    stored = decode_batch(version, body, READER)
    assert [(e.uuid, e.source, e.action, e.noun, e.client_timestamp) for e in batch] == [
        (s.uuid, s.named["source"], s.named["action"], s.named["noun"],
         s.named["client_timestamp"]) for s in stored]
    assert [serialize_v2_event(e) for e in batch] == [s.raw for s in stored]
    assert all(s.version == version for s in stored)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["1", "2", "2j"]))
def test_arbitrary_bytes_are_refused_cleanly(body: bytes, version: str) -> None:
    """Random bytes are a 400 or a 422, never taken and never another exception."""
    with pytest.raises((MalformedBatch, RefusedEvents)):
        decode_batch(version, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(["1", "2", "2j"]))
def test_arbitrary_json_is_refused_cleanly(document: object, version: str) -> None:
    """Well-formed JSON of the wrong shape (it holds no UUID) is a 400 or a 422, never a crash."""
    with pytest.raises((MalformedBatch, RefusedEvents)):
        decode_batch(version, json.dumps(document).encode())


#: A v2 event the collector takes: a struct whose one UUID-holding field is its uuid.
READABLE = '{"5":{"str":"%s"}}' % uuid.uuid4()
#: Events Thrift cannot read, or without a uuid, each with the reason its refusal gives.
MANGLED = {
    '{"1":{"str":"a"}}': (
        "no top-level string field holds a UUID; give the uuid field's id with --uuid-field ID "
        "(or --schema module:Struct with a 'uuid' field)"
    ),
    '{"4":{"i64":"x"}}': "not a TJSON struct: field 4: expected an integer for 'i64', got a string",
    '{"9":{"lst":["rec",2,{}]}}': (
        "not a TJSON struct: field 9: the lst says 2 elements but holds 1"
    ),
    "[]": "not a TJSON struct: expected a struct (a JSON object), got an array",
    "1": "not a TJSON struct: expected a struct (a JSON object), got a number",
}


def refusals_of(version: str, body: bytes) -> List[Tuple[int, str]]:
    """(index, reason) of each event a batch's 422 names; [] when the batch is taken whole."""
    try:
        decode_batch(version, body)
    except RefusedEvents as refused:
        return [(r.index, r.reason) for r in refused.refusals]
    return []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([READABLE, *MANGLED]), min_size=1, max_size=4))
def test_mangled_tjson_events_are_refused_per_event(elements: List[str]) -> None:
    """Events Thrift cannot read, or that lack required fields, are each named in a 422."""
    body = ('{"1":{"lst":["rec",%d,' % len(elements) + ",".join(elements) + "]}}").encode()
    expected = [(i, MANGLED[e]) for i, e in enumerate(elements) if e != READABLE]
    assert expected == refusals_of("2", body)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_gunzip(data: bytes) -> None:
    """Not-gzip input is a 400 (or a 413), never another exception."""
    with pytest.raises(Refused) as refused:
        gunzip_bounded(data, 1024)
    assert refused.value.status in (400, 413)


def test_deeply_nested_json_off_the_v2_envelope_is_a_400() -> None:
    """100000 nested arrays on /v2 are not its envelope: malformed, not a recursion error."""
    with pytest.raises(MalformedBatch):
        decode_batch("2", b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("version", ["1", "2j"])
def test_deeply_nested_json_is_the_events_422_not_a_recursion_error(version: str) -> None:
    """100000 nested arrays (well under the body cap): event 0 is refused, naming why."""
    with pytest.raises(RefusedEvents) as refused:
        decode_batch(version, b"[" * 100_000 + b"]" * 100_000)
    assert [(0, None, "nested too deeply for the JSON parser; an event may nest at most 64 "
                      "levels")] == [(r.index, r.uuid, r.reason) for r in refused.value.refusals]


@pytest.mark.parametrize("depth", [450, 5000])
def test_a_deeply_nested_unknown_thrift_field_is_refused_not_a_crash(depth: int) -> None:
    """Thrift skipping a deeply nested unknown field cannot crash the collector."""
    nested = '{"20":{"rec":' * depth + "{}" + "}}" * depth
    body = ('{"1":{"lst":["rec",1,' + nested + "]}}").encode()
    with pytest.raises((MalformedBatch, RefusedEvents)):
        decode_batch("2", body)


UUID = "6f1c6a53-5d0e-4b4f-9d43-2f1b0e6a7c11"


@pytest.mark.parametrize("documents", [False, True])
def test_a_lone_surrogate_in_a_batch_parsed_whole_is_kept_as_its_escape(documents: bool) -> None:
    """An escaped "\\u0072ec" sends the batch to json.loads; "\\ud800" is kept escaped, no 500."""
    body = (b'{"1":{"lst":["\\u0072ec",1,{"1":{"str":"%s"},"2":{"str":"\\ud800"}}]}}'
            % UUID.encode())
    assert [(UUID, b'{"1":{"str":"%s"},"2":{"str":"\\ud800"}}' % UUID.encode())] == [
        (e.uuid, e.raw) for e in decode_batch("2", body, documents=documents)]


def test_a_bare_nan_in_a_v1_payload_is_refused_naming_the_key() -> None:
    """v1 payload {"score": NaN}: not JSON, so a 422 giving the key's path and the fix."""
    body = (b'[{"event_topic":"t","event_type":"x","event_ts":1,"uuid":"%s",'
            b'"payload":{"game":{"score":NaN}}}]' % UUID.encode())
    assert [(0, "payload.game.score: bare NaN is not JSON; send a number, a string or null")
            ] == refusals_of("1", body)


def test_a_bare_nan_as_the_v2_count_is_a_400_that_shows_it_as_written() -> None:
    """"rec",NaN,...: the envelope is malformed; the message shows NaN as it was sent."""
    body = b'{"1":{"lst":["rec",NaN,{"1":{"str":"%s"}}]}}' % UUID.encode()
    with pytest.raises(MalformedBatch) as raised:
        decode_batch("2", body)
    assert ('expected {"1":{"lst":["rec",N,event,...]}}: the list says NaN events but holds 1'
            == str(raised.value))


def test_a_required_field_after_optional_ones_is_checked_by_the_compiled_decoder() -> None:
    """A schema whose required field follows optional ones compiles, and its events are taken."""
    from baseplate_events.collector.decode.documents import FieldShape, StructShape

    shape = StructShape("Late")
    shape.fields = {1: FieldShape("str", "note"), 2: FieldShape("str", "uuid")}
    shape.required = (2,)
    reader = EventReader(shape)
    event_uuid = str(uuid.uuid4())
    raw = json.dumps({"2": {"str": event_uuid}}).encode()
    check = reader._typed.check
    assert (event_uuid, None) == (check(raw), check(b'{"1":{"str":"x"}}'))
