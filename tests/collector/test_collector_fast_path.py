"""The collector's fast path for sinks that keep only bytes and uuid (Kafka, JSONL).

``decode_batch(..., documents=False)`` checks each event with a decoder
compiled from the struct's shape (the schema's, or the one learned from the
events taken before) without building its document. It must take exactly the
events, uuids and bytes that read_struct takes (``documents=True``, and the
general path with the library JSON parser), and refuse the rest with the same
reasons: the property tests hold the paths to each other on valid and on
mangled events, with a schema and without.
"""
from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from baseplate_events import serialize_v2_event
from baseplate_events.collector.decode import batches
from baseplate_events.collector.decode.batches import (
    EventReader,
    MalformedBatch,
    RefusedEvents,
    decode_batch,
)
from baseplate_events.collector.decode.schema import struct_shape
from baseplate_events.collector.sinks import UNREAD
from benchmarks.varied.ttypes import Checkout
from benchmarks.varied_events import varied_event
from event_schemas.event.ttypes import Event
from baseplate_events.collector.decode.documents import FieldShape, StructShape
from tests.core.test_tjson_identity import ROUND_TRIP_CLASSES, VALID, read_back, struct_strategy
from tests.thrift_gen.identity.ttypes import Everything, Lists, Maps, Nested, Scalars, Sets, Tree

UUID = "6f1c6a53-5d0e-4b4f-9d43-2f1b0e6a7c11"
OTHER = "0b7e4a52-3f7e-4c56-8a3b-1f5d9c2e7a10"


def outcome(version: str, body: bytes, reader: EventReader, documents: Optional[bool]
            ) -> Tuple[Any, ...]:
    """What decode_batch answers: the events (uuid, bytes, document) or why not.

    ``documents=None``: the general path alone (the library JSON parser).
    Documents are compared by repr: a NaN map key is not equal to itself.
    """
    try:
        if documents is None:
            events = batches._decode_general(version, body.decode("utf-8"), reader, 7)
        else:
            events = decode_batch(version, body, reader, 7, documents)
    except RefusedEvents as exc:
        return ("refused", [r.as_dict() for r in exc.refusals])
    except MalformedBatch as exc:
        return ("malformed", str(exc))
    return ("taken", [(e.uuid, e.version, e.raw, e.received_ms, repr(e.document))
                      for e in events])


def batch(version: str, events: List[bytes]) -> bytes:
    if version == "2":
        return b'{"1":{"lst":["rec",%d,' % len(events) + b",".join(events) + b"]}}"
    return b"[" + b",".join(events) + b"]"


def with_uuid(encoded: bytes, value: str = UUID) -> bytes:
    """The TJSON struct ``encoded`` with field 32000 holding ``value`` first."""
    head = b'{"32000":{"str":"%s"}' % value.encode()
    return head + (b"}" if encoded == b"{}" else b"," + encoded[1:])


def assert_same(version: str, body: bytes, reader: Optional[EventReader] = None
                ) -> Tuple[Any, ...]:
    """Every path's answer to ``body``, after checking that they are the same.

    The general path, read_struct on msgspec's parse, and the compiled check
    twice (a reader with no schema learns from the first what it compiles).
    """
    reader = EventReader() if reader is None else reader
    general = outcome(version, body, reader, documents=None)
    assert outcome(version, body, reader, documents=True) == general
    assert outcome(version, body, reader, documents=False) == general
    assert outcome(version, body, reader, documents=False) == general
    return general


def taught(reader: EventReader, *events: bytes) -> EventReader:
    """``reader`` after taking ``events`` (a reader with no schema learns their shape)."""
    decode_batch("2j", batch("2j", list(events)), reader)
    return reader


@pytest.mark.parametrize("cls", ROUND_TRIP_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_structs_are_taken_alike_by_both_paths(cls: Any, data: st.DataObject) -> None:
    """Any value of the identity schema's structs, with a uuid, is taken the same way."""
    structs = data.draw(st.lists(struct_strategy(cls, VALID), min_size=1, max_size=3))
    version = data.draw(st.sampled_from(["2", "2j"]))
    body = batch(version, [with_uuid(serialize_v2_event(s)) for s in structs])
    assert "taken" == assert_same(version, body)[0]


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` seven times in eight, else ``odd``: events are wrong in one place, not all."""
    return st.integers(0, 7).flatmap(lambda n: odd if n == 0 else good)


FIELD_KEYS = mostly(st.sampled_from(["1", "2", "3", "4", "6", "-7"]),
                    st.sampled_from(["5", "32000", "01", "-0", "+1", "x", "40000"]))
TAGS = st.sampled_from(["str", "i8", "i16", "i32", "i64", "dbl", "tf", "uid", "rec", "lst",
                        "set", "map", "str", "i32", "rec", "bin"])
SCALARS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.sampled_from([UUID, UUID.upper(), "{%s}" % UUID, "urn:uuid:" + UUID, OTHER, "NaN",
                     "-Infinity", "Infinity", UUID.replace("-", "")]),
    st.booleans(),
    st.none(),
)


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return mostly(st.integers(low, high), st.sampled_from([low - 1, low, high, high + 1]))


def _list_of(tag: str) -> st.SearchStrategy[List[Any]]:
    return st.lists(_bare(tag), max_size=3).flatmap(
        lambda items: st.sampled_from([len(items)] * 4 + [len(items) + 1]).map(
            lambda count: [tag, count, *items]))


def _map_of(key_tag: str, value_tag: str) -> st.SearchStrategy[List[Any]]:
    keys = {"str": st.text(max_size=3), "i32": st.sampled_from(["1", "-2", "x", "01"]),
            "tf": st.sampled_from(["0", "1", "2"])}.get(key_tag, st.text(max_size=3))
    return st.dictionaries(keys, _bare(value_tag), max_size=3).map(
        lambda pairs: [key_tag, value_tag, len(pairs), pairs])


def _bare(tag: str) -> st.SearchStrategy[Any]:
    """A JSON value for a TJSON ``tag``: mostly right, at times just off (range, count, type)."""
    if tag in RANGES:
        return _ints(*RANGES[tag])
    return {
        "str": st.one_of(st.text(max_size=4), st.sampled_from([UUID, UUID.upper(), OTHER])),
        "dbl": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(),
                         st.sampled_from(["NaN", "Infinity", "-Infinity", "nan"])),
        "tf": st.integers(-1, 2),
        "uid": st.sampled_from([UUID, UUID.upper(), "x"]),
        "rec": st.deferred(lambda: STRUCTS),
        "lst": TAGS.flatmap(_list_of),
        "set": TAGS.flatmap(_list_of),
        "map": st.tuples(st.sampled_from(["str", "i32", "tf", "rec"]), TAGS).flatmap(
            lambda kv: _map_of(*kv)),
    }.get(tag, SCALARS)


RANGES = {"i8": (-(2**7), 2**7 - 1), "i16": (-(2**15), 2**15 - 1),
          "i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1)}
_GOOD = TAGS.flatmap(lambda tag: _bare(tag).map(lambda value: {tag: value}))
TYPED = mostly(_GOOD, st.one_of(st.dictionaries(TAGS, SCALARS, max_size=2), SCALARS))
STRUCTS = st.dictionaries(FIELD_KEYS, TYPED, max_size=4)
EVENTS = st.tuples(STRUCTS, st.sampled_from(["5", "1", "32000"]),
                   st.sampled_from([UUID, UUID.upper(), OTHER, "x"])).map(
    lambda t: {t[1]: {"str": t[2]}, **t[0]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(mostly(EVENTS, SCALARS), min_size=1, max_size=3),
       version=st.sampled_from(["2", "2j"]),
       uuid_field=st.sampled_from([None, 1, 5, 32000]))
def test_mangled_events_get_the_same_answer_from_both_paths(
        events: List[Any], version: str, uuid_field: Any) -> None:
    """Any JSON, TJSON-like or not, is taken or refused by both paths alike, with one reason."""
    body = batch(version, [json.dumps(e).encode() for e in events])
    assert_same(version, body, EventReader(uuid_field=uuid_field))


def test_the_publishers_batch_is_checked_without_building_documents() -> None:
    """An event of a shape seen before takes the fast path: its document is read when asked."""
    event = b'{"1":{"str":"shop"},"5":{"str":"%s"},"6":{"rec":{"1":{"i64":3}}}}'
    reader = taught(EventReader(), event % OTHER.encode())
    (stored,) = decode_batch("2", batch("2", [event % UUID.encode()]), reader)
    assert (UUID, UNREAD) == (stored.uuid, stored._document)
    assert {1: "shop", 5: UUID, 6: {1: 3}} == stored.document


def test_maps_inside_lists_and_maps_are_taken_by_the_compiled_check() -> None:
    """A map is typed as a 4-tuple: in a list, or as a map's value, it stays on the fast path."""
    event = (b'{"5":{"str":"%s"},"7":{"lst":["map",2,["str","i32",1,{"a":1}],'
             b'["str","i32",0,{}]]},"8":{"map":["i32","map",1,{"3":["str","dbl",1,{"x":1.5}]}]}}')
    reader = taught(EventReader(), event % OTHER.encode())
    (stored,) = decode_batch("2", batch("2", [event % UUID.encode()]), reader)
    assert (UUID, UNREAD) == (stored.uuid, stored._document)
    assert {5: UUID, 7: [{"a": 1}, {}], 8: {3: {"x": 1.5}}} == stored.document
    miscounted = event.replace(b'["str","i32",0,{}]', b'["str","i32",1,{}]') % UUID.encode()
    assert reader._typed.check(miscounted) is None  # read_struct judges it
    assert "refused" == assert_same("2", batch("2", [miscounted]), reader)[0]


def test_two_uuid_fields_are_refused_by_the_fast_path_too() -> None:
    """Two top-level UUID strings: the same 422 reason as the general path."""
    event = b'{"1":{"str":"%s"},"2":{"str":"%s"}}' % (UUID.encode(), OTHER.upper().encode())
    assert ("refused", [{"index": 0, "uuid": None, "reason":
                         "fields 1, 2 all hold UUIDs; say which is the event's uuid with "
                         "--uuid-field ID"}]) == assert_same("2j", batch("2j", [event]))


def test_a_field_id_written_twice_is_one_field_as_in_the_general_path() -> None:
    """'5' and '05' are one field: the later value is the document's, on both paths."""
    event = b'{"5":{"str":"%s"},"05":{"str":"%s"}}' % (UUID.encode(), OTHER.encode())
    assert ("taken", [(OTHER, "2j", event, 7, repr({5: OTHER}))]) == assert_same(
        "2j", batch("2j", [event]))


ONE_FLAW = {
    "i8 out of range": '"1":{"i8":128}',
    "i64 out of range": '"1":{"i64":9223372036854775808}',
    "two tags": '"1":{"str":"a","i32":1}',
    "no tag": '"1":{}',
    "tf neither 1 nor 0": '"1":{"tf":2}',
    "list count": '"1":{"lst":["i32",2,1]}',
    "unknown element type": '"1":{"lst":["nope",0]}',
    "map key not an integer": '"1":{"map":["i32","str",1,{"x":"a"}]}',
    "map count": '"1":{"map":["str","str",2,{"a":"b"}]}',
    "not a uuid": '"1":{"uid":"x"}',
    "lower-case nan": '"1":{"dbl":"nan"}',
    "nested out of range": '"1":{"rec":{"1":{"i16":40000}}}',
    "unknown nested tag": '"1":{"set":["rec",1,{"1":{"bad":1}}]}',
    "field id out of range": '"40000":{"str":"a"}',
    "float for an int": '"1":{"i32":1.0}',
    "number for a string": '"1":{"str":1}',
    "unknown tag": '"1":{"bin":"x"}',
    "uuid field written again, not a uuid": '"05":{"str":"x"}',
}


@pytest.mark.parametrize("flaw", ONE_FLAW.values(), ids=list(ONE_FLAW))
def test_an_event_wrong_in_one_place_is_refused_by_both_paths(flaw: str) -> None:
    """Each rule read_struct keeps holds on the fast path: the same 422 and reason."""
    event = b'{"5":{"str":"%s"},%s}' % (UUID.encode(), flaw.encode())
    assert "refused" == assert_same("2", batch("2", [event]))[0]


def test_the_uuid_field_written_again_as_an_integer_is_refused_by_both_paths() -> None:
    """--uuid-field 5 with '5' then '05' (an i32): the document's field 5 is the i32."""
    event = b'{"5":{"str":"%s"},"05":{"i32":1}}' % UUID.encode()
    assert ("refused", [{"index": 0, "uuid": None,
                         "reason": "field 5: missing or not a string (--uuid-field 5)"}]
            ) == assert_same("2j", batch("2j", [event]), EventReader(uuid_field=5))


def test_a_uid_field_is_the_uuid_in_canonical_form_on_the_fast_path() -> None:
    """A uid field in braces and upper case is the event's uuid, canonical, without documents."""
    event = b'{"1":{"str":"shop"},"9":{"uid":"{%s}"}}' % UUID.upper().encode()
    (stored,) = decode_batch("2j", batch("2j", [event]), taught(EventReader(), event))
    assert (UUID, UNREAD) == (stored.uuid, stored._document)
    assert ("taken", [(UUID, "2j", event, 7, repr({1: "shop", 9: UUID}))]) == assert_same(
        "2j", batch("2j", [event]))


# -- numbers a double cannot hold, JSON whitespace ------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_bare_nan_or_infinity_in_a_dbl_is_refused_by_both_paths(literal: str) -> None:
    """A bare NaN/Infinity is not JSON (TJSON writes "NaN"): a 422 naming the field."""
    event = b'{"5":{"str":"%s"},"2":{"dbl":%s}}' % (UUID.encode(), literal.encode())
    assert ("refused", [{"index": 0, "uuid": None, "reason":
                         f'not a TJSON struct: field 2: bare {literal} is not JSON; TJSON '
                         f'writes it "{literal}", as a string'}]) == assert_same(
        "2", batch("2", [event]))


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_a_number_beyond_a_double_is_refused_by_both_paths(number: str) -> None:
    """1e400 (read as infinite) is no "dbl": a 422 naming the field and how to write infinity."""
    event = b'{"5":{"str":"%s"},"6":{"rec":{"1":{"dbl":%s}}}}' % (UUID.encode(),
                                                                  number.encode())
    assert ("refused", [{"index": 0, "uuid": None, "reason":
                         'not a TJSON struct: field 6.1: a number too large for "dbl" (the '
                         'largest double is about 1.8e308); TJSON writes an infinite value '
                         '"Infinity" or "-Infinity", as a string'}]) == assert_same(
        "2j", batch("2j", [event]))


def test_an_integer_beyond_a_double_is_refused_by_both_paths_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """A 401-digit integer dbl: a 422 with the reason on both paths, nothing logged."""
    event = b'{"5":{"str":"%s"},"2":{"dbl":1%s}}' % (UUID.encode(), b"0" * 400)
    assert ("refused", [{"index": 0, "uuid": None, "reason":
                         'not a TJSON struct: field 2: an integer too large for "dbl" (the '
                         'largest double is about 1.8e308); TJSON writes an infinite value '
                         '"Infinity" or "-Infinity", as a string'}]) == assert_same(
        "2j", batch("2j", [event]))
    assert [] == caplog.records


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_the_compiled_check_leaves_a_double_it_cannot_hold_to_read_struct(value: str) -> None:
    """A dbl field learned from 1.5, then a bare NaN, 1e400 or a 401-digit integer: refused."""
    event = b'{"5":{"str":"%s"},"2":{"dbl":%s}}'
    reader = taught(EventReader(), event % (OTHER.encode(), b"1.5"))
    answer = assert_same("2j", batch("2j", [event % (UUID.encode(), value.encode())]), reader)
    assert "refused" == answer[0]


@pytest.mark.parametrize("space", ["\u00a0", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028"])
def test_only_json_whitespace_may_separate_events(space: str) -> None:
    """NBSP, VT, FF, \\x1c-\\x1f, \\x85, U+2028 between events are not JSON: a 400."""
    event = '{"5":{"str":"%s"}}' % UUID
    body = ("[" + event + "," + space + event + "]").encode()
    assert ("malformed", "body is not JSON: Expecting value: line 1 column 55 (char 54)"
            ) == assert_same("2j", body)


@pytest.mark.parametrize("count", ["\u0661", "01"])
def test_the_v2_count_must_be_a_json_integer(count: str) -> None:
    """An Arabic-Indic digit or a leading zero as the v2 event count is not JSON: a 400."""
    body = ('{"1":{"lst":["rec",%s,{"5":{"str":"%s"}}]}}' % (count, UUID)).encode()
    assert "malformed" == assert_same("2", body)[0]


# -- the compiled check against read_struct, on valid events changed in one place ----------


def _paths(node: Any, path: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    """Every place in a parsed JSON document, the root excepted."""
    found: List[Tuple[Any, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append(path + (key,))
            found += _paths(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.append(path + (index,))
            found += _paths(value, path + (index,))
    return found


def _replaced(node: Any, path: Tuple[Any, ...], value: Any, rename: Optional[str]) -> Any:
    """``node`` with the value at ``path`` replaced (or, in an object, its key renamed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        out = {}
        for key, inner in node.items():
            if key != head:
                out[key] = inner
            elif rename is not None and not rest:
                out[rename] = inner
            else:
                out[key] = _replaced(inner, rest, value, rename)
        return out
    out_list = list(node)
    out_list[head] = _replaced(node[head], rest, value, rename)
    return out_list


REPLACEMENTS = st.one_of(SCALARS, TYPED, st.sampled_from(
    ["i8", "i16", "i32", "i64", "dbl", "str", "uid", "tf", "rec", "lst", "set", "map", 0, 1, 2,
     -1, 128, 32768, 2**31, 2**63, 1.5, "NaN", [], {}, ["i32", 0], ["str", "str", 0, {}]]))
RENAMES = st.sampled_from(["0", "01", "+1", "-1", "7", "32001", "x", "", "1.0", "\u0661",
                           "i32", "str", "rec"])


@st.composite
def changed_in_one_place(draw: st.DrawFn, event: bytes) -> bytes:
    """``event`` with one value replaced, or one key renamed, somewhere inside it."""
    tree = json.loads(event)
    paths = _paths(tree)
    path = draw(st.sampled_from(paths))
    rename = draw(st.none() | RENAMES)
    value = draw(REPLACEMENTS)
    return json.dumps(_replaced(tree, path, value, rename), separators=(",", ":")).encode()


def _varied(data: st.DataObject) -> Any:
    import random

    return varied_event(random.Random(data.draw(st.integers(0, 2**32))))


SCHEMA_CASES = {
    "Event": lambda data: data.draw(struct_strategy(Event, VALID)),
    "Checkout": _varied,
}


@pytest.mark.parametrize("name", list(SCHEMA_CASES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_with_a_schema_an_event_changed_in_one_place_gets_read_structs_answer(
        name: str, data: st.DataObject) -> None:
    """--schema: the decoder compiled from it takes or leaves each event as read_struct does."""
    cls = {"Event": Event, "Checkout": Checkout}[name]
    struct = SCHEMA_CASES[name](data)
    struct.uuid = UUID
    good = serialize_v2_event(struct)
    reader = EventReader(struct_shape(cls))
    bad = data.draw(changed_in_one_place(good))
    version = data.draw(st.sampled_from(["2", "2j"]))
    answer = assert_same(version, batch(version, [good, bad]), reader)
    try:
        read_back(cls, bad)
    except Exception:  # what Thrift's own reader refuses, the collector refuses too
        assert answer[0] in ("refused", "malformed")


@pytest.mark.parametrize("cls", [*ROUND_TRIP_CLASSES, Checkout], ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_without_a_schema_an_event_changed_in_one_place_gets_read_structs_answer(
        cls: Any, data: st.DataObject) -> None:
    """No schema: the decoder learned from valid events answers one changed as read_struct."""
    structs = data.draw(st.lists(struct_strategy(cls, VALID), min_size=1, max_size=3))
    events = [with_uuid(serialize_v2_event(s), str(__import__("uuid").uuid4()))
              for s in structs]
    reader = taught(EventReader(), *events)
    bad = data.draw(changed_in_one_place(events[0]))
    version = data.draw(st.sampled_from(["2", "2j"]))
    assert_same(version, batch(version, [events[-1], bad]), reader)


def test_with_a_schema_a_required_field_missing_inside_a_list_is_refused_naming_it() -> None:
    """--schema: a line item without its required sku: a 422 naming the struct and field."""
    import random

    struct = varied_event(random.Random(5))
    struct.uuid = UUID
    struct.items[0].sku = None
    body = batch("2j", [serialize_v2_event(struct)])
    assert ("refused", [{"index": 0, "uuid": None, "reason":
                         "not a TJSON Checkout: field 5.[0]: LineItem: required "
                         "field missing: sku (field 1)"}]
            ) == assert_same("2j", body, EventReader(struct_shape(Checkout)))


@pytest.mark.parametrize("where", ['"9":{"rec":{"1":{"uid":"%s"}}}', '"9":{"lst":["uid",1,"%s"]}',
                                   '"9":{"map":["uid","i8",1,{"%s":1}]}'])
@pytest.mark.parametrize("spelling", ["urn:uu\u0130d:", "URN:UU\u0131D:"])
def test_a_uuid_spelled_with_a_turkish_i_is_refused_by_the_compiled_check(
        where: str, spelling: str) -> None:
    """A uid after urn:uuİd: (U+0130) or URN:UUıD: where a uid was learned: a 422."""
    event = '{"5":{"str":"%s"},%s}' % (UUID, where)
    reader = taught(EventReader(), (event % OTHER).encode())
    answer = assert_same("2j", batch("2j", [(event % (spelling + OTHER)).encode()]), reader)
    assert "refused" == answer[0]


@pytest.mark.parametrize("key", ["1_0", " 1", "\u0661", "INFINITY", "0x1"])
def test_a_dbl_map_key_off_the_number_syntax_is_refused_by_the_compiled_check(key: str) -> None:
    """Map keys of type dbl learned from "1.5": "1_0", " 1", "١"... are refused alike."""
    event = '{"5":{"str":"%s"},"9":{"map":["dbl","i8",1,{"%s":1}]}}'
    reader = taught(EventReader(), (event % (OTHER, "1.5")).encode())
    answer = assert_same("2j", batch("2j", [(event % (UUID, key)).encode()]), reader)
    assert "refused" == answer[0]


def test_a_reader_without_a_schema_compiles_new_shapes_at_a_bounded_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """32 new shapes compile at once; the 33rd waits RECOMPILE_INTERVAL (then it compiles)."""
    from baseplate_events.collector.decode import typed_reader as typed

    now = [1000.0]
    monkeypatch.setattr(typed.time, "monotonic", lambda: now[0])
    reader = typed.TypedReader(None, None)
    for fid in range(1, typed.MAX_COMPILES + 2):
        reader.learn({str(fid): {"str": "x"}})
    assert typed.MAX_COMPILES == reader.compiles
    now[0] += typed.RECOMPILE_INTERVAL
    reader.learn({"999": {"i32": 1}})
    assert (typed.MAX_COMPILES + 1, None) == (reader.compiles, reader.check(b'{"999":{"i32":1}}'))
    assert UUID == reader.check(b'{"999":{"i32":1},"32":{"str":"%s"}}' % UUID.encode())
    assert None is reader.check(b'{"33":{"str":"%s"}}' % UUID.encode())  # dropped, not queued


def test_a_list_of_structs_first_seen_empty_does_not_stop_the_compiled_check() -> None:
    """Learned from ["rec",0], then a list with a struct: that one is learned, the next compiled."""
    empty = b'{"5":{"str":"%s"},"2":{"lst":["rec",0]}}'
    full = b'{"5":{"str":"%s"},"2":{"lst":["rec",1,{"1":{"i32":7}}]}}'
    reader = taught(EventReader(), empty % OTHER.encode())
    assert UUID == reader._typed.check(empty % UUID.encode())
    taught(reader, full % OTHER.encode())
    assert UUID == reader._typed.check(full % UUID.encode())


@pytest.mark.parametrize("depth", [63, 64, 500, 3000])
def test_nesting_gets_the_same_answer_from_every_path_at_any_depth(depth: int) -> None:
    """Structs nested 63 deep are taken, 64 and more refused, on every path alike."""
    def nested(levels: int, uuid: str) -> bytes:
        inner = '{"1":{"i32":1}}'
        for _ in range(levels):
            inner = '{"1":{"rec":%s}}' % inner
        return ('{"5":{"str":"%s"},"2":{"rec":%s}}' % (uuid, inner)).encode()

    reader = taught(EventReader(), nested(62, OTHER))  # the compiled check knows 62 levels
    answer = assert_same("2j", batch("2j", [nested(depth, UUID)]), reader)
    assert ("taken" if depth < 64 else "refused") == answer[0]


def with_uuid_field(cls: Any) -> StructShape:
    """``cls``'s schema with a ``uuid`` string as field 32000, as :func:`with_uuid` writes."""
    inner = struct_shape(cls)
    shape = StructShape(inner.name)
    shape.fields = {**inner.fields, 32000: FieldShape("str", "uuid")}
    shape.required = inner.required
    return shape


EVERY_SHAPE = [Scalars, Lists, Sets, Maps, Nested, Tree, Everything]


@pytest.mark.parametrize("schema", [False, True], ids=["learned", "schema"])
@pytest.mark.parametrize("cls", EVERY_SHAPE, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_shape_is_taken_by_the_compiled_check(cls: Any, schema: bool,
                                                    data: st.DataObject) -> None:
    """Every type in every position, empty containers and a recursive tree included: what
    read_struct takes, the compiled decoder takes, with --schema and learned from the event."""
    raw = with_uuid(serialize_v2_event(data.draw(struct_strategy(cls, VALID))), OTHER)
    reader = EventReader(with_uuid_field(cls)) if schema else EventReader()
    # with --schema, a value may leave a required field unset (refused) or write a binary
    # that is not base64 (refused, as by Thrift's reader)
    assume("taken" == assert_same("2j", batch("2j", [raw]), reader)[0])
    # a map key "-0" beside integer-keyed maps is left to read_struct (see the test below)
    assume(b'"-0":' not in raw)
    assert OTHER == reader._typed.check(raw)


@pytest.mark.parametrize("empty, full", [
    (b'"1":{"lst":["lst",0]}', b'"1":{"lst":["lst",1,["i32",2,1,2]]}'),
    (b'"2":{"lst":["set",0]}', b'"2":{"lst":["set",1,["str",1,"a"]]}'),
    (b'"3":{"lst":["map",0]}', b'"3":{"lst":["map",1,["str","i64",1,{"a":1}]]}'),
    (b'"4":{"map":["str","lst",0,{}]}', b'"4":{"map":["str","lst",1,{"a":["rec",0]}]}'),
    (b'"8":{"lst":["lst",0]}', b'"8":{"lst":["lst",1,["lst",1,["str",1,"x"]]]}'),
], ids=["list of lists", "list of sets", "list of maps", "map of lists", "three deep"])
def test_a_container_of_containers_first_seen_empty_does_not_stop_the_compiled_check(
        empty: bytes, full: bytes) -> None:
    """Learned from an empty one: that shape compiled at once, a fuller one learned then."""
    event = b'{"5":{"str":"%s"},%s}'
    reader = taught(EventReader(), event % (OTHER.encode(), empty))
    assert UUID == reader._typed.check(event % (UUID.encode(), empty))
    answer = assert_same("2j", batch("2j", [event % (UUID.encode(), full)]), reader)
    assert "taken" == answer[0]
    assert UUID == reader._typed.check(event % (UUID.encode(), full))
    # an empty one is still taken by the wider shape
    assert UUID == reader._typed.check(event % (UUID.encode(), empty))


@pytest.mark.parametrize("depth", [1, 8, 9, 20, 32, 33, 500])
def test_a_recursive_schema_is_compiled_and_deep_trees_get_read_structs_answer(
        depth: int) -> None:
    """--schema Tree: the compiled type unrolls 16 levels (8 trees, each a struct in a list);
    deeper trees get read_struct's answer, taken up to its 64 levels, then refused."""
    def tree(levels: int) -> str:
        node = '{"1":{"str":"leaf"}}'
        for _ in range(levels):
            node = '{"1":{"str":"node"},"2":{"lst":["rec",1,%s]}}' % node
        return node

    raw = with_uuid(tree(depth).encode(), UUID)
    reader = EventReader(with_uuid_field(Tree))
    answer = assert_same("2j", batch("2j", [raw]), reader)
    assert (UUID if depth <= 8 else None) == reader._typed.check(raw)
    if depth <= 32:
        assert "taken" == answer[0]
    else:
        assert "refused" == answer[0]
        assert "64 levels" in answer[1][0]["reason"]


@pytest.mark.parametrize("cls", [Nested, Tree, Everything], ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_with_a_recursive_or_nested_schema_an_event_changed_in_one_place_gets_read_structs_answer(
        cls: Any, data: st.DataObject) -> None:
    """--schema with a tree, or containers of containers: the compiled decoder as read_struct."""
    good = with_uuid(serialize_v2_event(data.draw(struct_strategy(cls, VALID))), UUID)
    bad = data.draw(changed_in_one_place(good))
    version = data.draw(st.sampled_from(["2", "2j"]))
    assert_same(version, batch(version, [good, bad]), EventReader(with_uuid_field(cls)))


@pytest.mark.parametrize("cls, field, bad", [
    (Scalars, '"9":{"str":"%s"},"11":{"str":"r"},"12":{"i32":1}', "0"),
    (Lists, '"8":{"lst":["str",2,"AAEC","%s"]}', "abcde"),
    (Sets, '"8":{"set":["str",1,"%s"]}', "é"),
    (Maps, '"8":{"map":["str","str",1,{"%s":"AAEC"}]}', "x"),
    (Maps, '"8":{"map":["str","str",1,{"AAEC":"%s"}]}', "Zm9vY"),
], ids=["field", "list element", "set element", "map key", "map value"])
def test_with_a_schema_a_binary_that_is_not_base64_is_refused_as_by_thrift(
        cls: Any, field: str, bad: str) -> None:
    """--schema: a binary Thrift's reader cannot decode is a 422 naming it, on every path;
    base64 (unpadded, as Thrift writes it) is taken by the compiled check."""
    event = '{"32000":{"str":"%s"},%s}' % (UUID, field)
    reader = EventReader(with_uuid_field(cls))
    good = (event % "AAE").encode()
    read_back(cls, good)
    assert UUID == reader._typed.check(good)
    wrong = (event % bad).encode()
    with pytest.raises(ValueError):  # binascii.Error, or non-ASCII text
        read_back(cls, wrong)
    answer = assert_same("2j", batch("2j", [wrong]), reader)
    assert "refused" == answer[0]
    assert "a binary field holds base64" in answer[1][0]["reason"]
    # without a schema a binary is any string: taken
    assert "taken" == assert_same("2j", batch("2j", [wrong]))[0]


@pytest.mark.parametrize("count, answer", [(1, "refused"), (2, "taken")])
@pytest.mark.parametrize("schema", [False, True], ids=["learned", "schema"])
def test_integer_map_keys_0_and_minus_0_are_two_keys_on_every_path(
        count: int, answer: str, schema: bool) -> None:
    """msgspec reads "0" and "-0" as one key: the compiled check leaves such a map to
    read_struct, which counts two (Thrift's reader refuses the map with count 1 too)."""
    event = '{"32000":{"str":"%s"},"4":{"map":["i32","tf",%d,{%s}]}}'
    reader = EventReader(with_uuid_field(Maps)) if schema else taught(
        EventReader(), (event % (OTHER, 1, '"3":1')).encode())
    raw = (event % (UUID, count, '"0":1,"-0":0')).encode()
    assert None is reader._typed.check(raw)
    assert answer == assert_same("2j", batch("2j", [raw]), reader)[0]
    assert UUID == reader._typed.check((event % (UUID, 2, '"0":1,"7":0')).encode())


def test_a_struct_shared_at_two_depths_is_compiled_only_where_it_fits() -> None:
    """A struct 31 levels deep inside, reused 33 levels down: the compiled type would nest
    past 64 there, so the shape is left to read_struct, which refuses the deep event."""
    def chain(prefix: str, levels: int, inner: StructShape) -> StructShape:
        for level in range(levels):
            outer = StructShape(f"{prefix}{level}")
            outer.fields = {1: FieldShape("rec", struct=inner)}
            inner = outer
        return inner

    leaf = StructShape("Leaf")
    leaf.fields = {1: FieldShape("lst", element=FieldShape("i32"))}
    shared = chain("C", 31, leaf)
    end = StructShape("End")
    end.fields = {1: FieldShape("rec", struct=shared)}
    root = StructShape("Root")
    root.fields = {1: FieldShape("rec", struct=shared), 2: FieldShape("rec", struct=chain(
        "D", 31, end)), 32000: FieldShape("str", "uuid")}
    value = '{"1":{"lst":["i32",1,5]}}'
    for _ in range(31):
        value = '{"1":{"rec":%s}}' % value
    shallow = ('{"32000":{"str":"%s"},"1":{"rec":%s}}' % (UUID, value)).encode()
    for _ in range(32):
        value = '{"1":{"rec":%s}}' % value
    deep = ('{"32000":{"str":"%s"},"2":{"rec":%s}}' % (UUID, value)).encode()
    reader = EventReader(root)
    assert None is reader._typed.check(deep)
    assert "refused" == assert_same("2j", batch("2j", [deep]), reader)[0]
    assert "taken" == assert_same("2j", batch("2j", [shallow]), reader)[0]
