"""The collector's generic TJSON reading: any struct, every type, checked against a schema.

The property tests hold our reading to Thrift's own ``TJSONProtocol`` reader:
for any value of the identity schema's structs and of the benchmarks' varied
schema (every TJSON shape), what we read (turned back into the Thrift class
through the schema) equals what Thrift reads, whether read_struct or the
decoder compiled from the schema took the event.
"""
from __future__ import annotations

import base64
import json
from typing import Any, Dict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baseplate_events import serialize_v2_event
from baseplate_events.collector.decode.batches import (
    EventReader,
    RefusedEvents,
    canonical_uuid,
    decode_batch,
)
from baseplate_events.collector.decode.documents import (MAX_DEPTH, StructShape, TJSONError,
                                                          read_struct)
from baseplate_events.collector.decode.schema import SchemaError, load_schema, struct_shape
from baseplate_events.collector.sinks import UNREAD
from benchmarks.varied.ttypes import Checkout
from event_schemas.event.ttypes import Event
from tests.core.test_tjson_identity import ROUND_TRIP_CLASSES, VALID, read_back, struct_strategy
from tests.thrift_gen.shop.ttypes import ShopEvent

UUID = "6f1c6a53-5d0e-4b4f-9d43-2f1b0e6a7c11"


def read(text: str, shape: Any = None) -> Dict[int, Any]:
    return read_struct(json.loads(text), shape)


def error(text: str, shape: Any = None) -> str:
    with pytest.raises(TJSONError) as raised:
        read(text, shape)
    return str(raised.value)


# -- any struct, without a schema ------------------------------------------------------


def test_every_scalar_type_reads_to_its_python_value() -> None:
    """tf, i8..i64, dbl (and its special values), str and uid become bool, int, float, str."""
    document = read('{"1":{"tf":1},"2":{"i8":-128},"3":{"i16":300},"4":{"i32":-5},'
                    '"5":{"i64":9223372036854775807},"6":{"dbl":1.5},"7":{"dbl":"-Infinity"},'
                    '"8":{"str":"x"},"9":{"uid":"%s"},"10":{"dbl":2}}' % UUID.upper())
    assert {1: True, 2: -128, 3: 300, 4: -5, 5: 2**63 - 1, 6: 1.5, 7: float("-inf"), 8: "x",
            9: UUID, 10: 2.0} == document


def test_containers_and_nested_structs_read_by_field_id() -> None:
    """rec, lst, set and map (typed keys) nest to any depth under the limit."""
    document = read('{"6":{"rec":{"1":{"str":"c"},"2":{"lst":["rec",1,{"1":{"i32":2}}]},'
                    '"3":{"map":["i32","set",1,{"-4":["str",1,"a"]}]}}}}')
    assert {6: {1: "c", 2: [{1: 2}], 3: {-4: ["a"]}}} == document


@pytest.mark.parametrize("text, message", [
    ('{"x":{"str":"a"}}', "'x' is not a field id (a decimal i16)"),
    ('{"40000":{"str":"a"}}', "'40000' is not a field id (a decimal i16)"),
    ('{"1":"a"}', 'field 1: expected {"TYPE": value}, e.g. {"str": "x"}'),
    ('{"1":{"str":"a","i32":1}}', 'field 1: expected {"TYPE": value}, e.g. {"str": "x"}'),
    ('{"1":{"i8":128}}', "field 1: 128 is out of range for 'i8' (-128..127)"),
    ('{"1":{"i64":"soon"}}', "field 1: expected an integer for 'i64', got a string"),
    ('{"1":{"tf":true}}', 'field 1: expected 1 or 0 for "tf", got a boolean'),
    ('{"1":{"str":5}}', 'field 1: expected a string for "str", got a number'),
    ('{"1":{"xyz":5}}', "field 1: unknown type 'xyz'; expected one of tf, i8, i16, i32, i64, "
                        "dbl, str, uid, rec, lst, set, map"),
    ('{"2":{"lst":["i32",2,1]}}', "field 2: the lst says 2 elements but holds 1"),
    ('{"2":{"lst":["i32",2,1,"a"]}}', "field 2.[1]: expected an integer for 'i32', got a string"),
    ('{"3":{"map":["str","i32",1,{"a":1,"b":2}]}}', "field 3: the map says 1 entries but holds 2"),
    ('{"3":{"map":["rec","i32",0,{}]}}', "field 3: map keys of type 'rec' are not supported"),
    ('{"6":{"rec":{"1":{"rec":{"2":{"dbl":"fast"}}}}}}',
     'field 6.1.2: expected a number, "NaN", "Infinity" or "-Infinity" for "dbl", got a string'),
])
def test_malformed_tjson_is_refused_naming_the_field(text: str, message: str) -> None:
    """Each malformation raises TJSONError with the path of field ids and what is wrong."""
    assert message == error(text)


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    """Structs nested past MAX_DEPTH are refused rather than recursed into."""
    text = '{"1":{"rec":' * (MAX_DEPTH + 2) + "{}" + "}}" * (MAX_DEPTH + 2)
    assert error(text).endswith(f"nested more than {MAX_DEPTH} levels deep")


# -- with a schema ---------------------------------------------------------------------


SHOP = struct_shape(ShopEvent)


def test_a_schema_names_the_field_in_an_error() -> None:
    """With a schema, a field of the wrong type is refused by id and by name."""
    assert "field 6.2 (cart.items): expected 'lst', got 'str'" == error(
        '{"4":{"str":"a"},"6":{"rec":{"2":{"str":"x"}}}}', SHOP)


def test_inside_a_list_the_path_gives_the_index() -> None:
    """An element's error carries its index; names stop where a list element has none."""
    assert "field 6.2.[0].2: expected 'i32', got 'str'" == error(
        '{"4":{"str":"a"},"6":{"rec":{"2":{"lst":["rec",1,{"2":{"str":"x"}}]}}}}', SHOP)


def test_a_required_field_missing_is_refused() -> None:
    """ShopEvent.action is required: an event without it is refused, naming it."""
    assert "ShopEvent: required field missing: action (field 4)" == error(
        '{"1":{"str":"web"}}', SHOP)


def test_a_field_id_the_schema_does_not_know_is_kept() -> None:
    """Unknown ids are read generically, as Thrift readers skip rather than refuse them."""
    assert {4: "buy", 99: [1]} == read('{"4":{"str":"buy"},"99":{"lst":["i8",1,1]}}', SHOP)


@pytest.mark.parametrize("spec, message", [
    ("shop", "schema: expected module:Struct, e.g. shop.ttypes:Event, got 'shop'"),
    ("no_such_module_here:Event", "schema: cannot import 'no_such_module_here' (No module named "
                                  "'no_such_module_here'); is the generated code on PYTHONPATH?"),
    ("json:loads", "schema: json has no Thrift struct 'loads' (a class generated by thrift "
                   "--gen py, with a thrift_spec)"),
])
def test_a_bad_schema_setting_says_what_to_fix(spec: str, message: str) -> None:
    """--schema that is not module:Struct of a generated class is refused with the fix."""
    with pytest.raises(SchemaError) as raised:
        load_schema(spec)
    assert message == str(raised.value)


# -- uuids ---------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [
    UUID, UUID.upper(), "{%s}" % UUID, "urn:uuid:" + UUID, UUID.replace("-", ""),
])
def test_every_spelling_of_a_uuid_is_one_canonical_id(spelling: str) -> None:
    """Braces, urn:uuid:, upper case and bare hex all give the lower-case hyphenated form."""
    assert UUID == canonical_uuid(spelling)


@pytest.mark.parametrize("spelling", [
    "{%s}" % UUID.replace("-", ""), "URN:UUID:" + UUID.upper(), UUID.replace("-", "").upper(),
])
def test_braces_and_urn_take_either_case_and_bare_hex(spelling: str) -> None:
    """{32 hex}, URN:UUID: in upper case and upper-case bare hex are the same canonical id."""
    assert UUID == canonical_uuid(spelling)


HEX = UUID.replace("-", "")


@pytest.mark.parametrize("spelling", [
    HEX[:8] + "_" + HEX[9:],  # int(x, 16) takes "_"
    " " + HEX[1:],  # and spaces around
    HEX[1:] + "\n",
    "\u0666" + HEX[1:],  # and non-ASCII digits: Arabic-Indic six
    HEX[:4] + "-" + HEX[4:8] + "-" + HEX[8:],  # UUID() drops hyphens wherever they are
    UUID[:8] + UUID[9:],  # some hyphens but not all
    "{" + UUID,  # one brace
    "{{%s}}" % UUID,
    "uuid:" + UUID,  # UUID() drops "urn:" and "uuid:" on their own
    "urn:" + UUID,
    "urn:uuid:{%s}" % UUID,
])
def test_a_string_uuid_module_would_read_is_not_a_uuid_in_another_spelling(spelling: str) -> None:
    """Only ASCII hex in the accepted spellings: no two strings share a de-dup key by accident."""
    assert None is canonical_uuid(spelling)


def test_a_uid_field_in_another_spelling_is_refused_by_both_paths() -> None:
    """A uid holding " " + 31 hex digits (uuid.UUID takes it) is refused naming the field."""
    body = b'[{"1":{"str":"%s"},"2":{"uid":" %s"}}]' % (UUID.encode(), HEX[1:].encode())
    reasons = []
    for documents in (False, True):
        with pytest.raises(RefusedEvents) as raised:
            decode_batch("2j", body, documents=documents)
        reasons.append([r.reason for r in raised.value.refusals])
    assert [['not a TJSON struct: field 2: expected a UUID string for "uid", got a string']
            ] * 2 == reasons


def test_without_a_uuid_field_the_event_is_refused_with_the_flag() -> None:
    """No top-level string holds a UUID: 422 saying to give --uuid-field."""
    with pytest.raises(RefusedEvents) as raised:
        decode_batch("2j", b'[{"1":{"str":"web"}}]')
    assert ["no top-level string field holds a UUID; give the uuid field's id with "
            "--uuid-field ID (or --schema module:Struct with a 'uuid' field)"] == [
        r.reason for r in raised.value.refusals]


def test_uuid_field_says_which_field_is_missing() -> None:
    """With --uuid-field, an event without that field is refused naming the field and flag."""
    with pytest.raises(RefusedEvents) as raised:
        decode_batch("2j", b'[{"1":{"str":"%s"}}]' % UUID.encode(), EventReader(uuid_field=3))
    assert ["field 3: missing or not a string (--uuid-field 3)"] == [
        r.reason for r in raised.value.refusals]


def test_the_event_keeps_its_bytes_as_received() -> None:
    """StoredEvent.raw is the event's own JSON text, spacing included; uuid is canonical."""
    body = b'[ {"3": {"str": "%s"}} ,{"3":{"str":"%s"}}]' % (UUID.upper().encode(),
                                                            UUID.encode())
    events = decode_batch("2j", body)
    assert [b'{"3": {"str": "%s"}}' % UUID.upper().encode(), b'{"3":{"str":"%s"}}'
            % UUID.encode()] == [e.raw for e in events]
    assert [UUID, UUID] == [e.uuid for e in events]


# -- the same values as Thrift's own reader --------------------------------------------


def to_thrift(document: Dict[int, Any], cls: Any) -> Any:
    """Our document, back into the Thrift class through its thrift_spec."""
    values = {}
    for entry in cls.thrift_spec:
        if entry is not None and entry[0] in document:
            values[entry[2]] = _to_value(document[entry[0]], entry[1], entry[3])
    return cls(**values)


def _to_value(value: Any, ttype: int, args: Any) -> Any:
    from thrift.Thrift import TType

    if ttype == TType.STRUCT:
        return to_thrift(value, args[0])
    if ttype == TType.STRING and args == "BINARY":
        return base64.b64decode(value + "=" * (-len(value) % 4))
    if ttype == TType.LIST:
        return [_to_value(v, args[0], args[1]) for v in value]
    if ttype == TType.SET:
        return {_to_value(v, args[0], args[1]) for v in value}
    if ttype == TType.MAP:
        return {_to_value(k, args[0], args[1]): _to_value(v, args[2], args[3])
                for k, v in value.items()}
    return value


def without_required(shape: StructShape, seen: Any = None) -> StructShape:
    """The shape with no required fields: Thrift's reader does not check them either."""
    seen = set() if seen is None else seen
    if id(shape) not in seen:
        seen.add(id(shape))
        shape.required = ()
        for field in shape.fields.values():
            for inner in (field, field.element, field.key):
                while inner is not None and inner.struct is None and inner.element is not None:
                    inner = inner.element
                if inner is not None and inner.struct is not None:
                    without_required(inner.struct, seen)
    return shape


@pytest.mark.parametrize("cls", [*ROUND_TRIP_CLASSES, Checkout], ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generic_reading_matches_thrifts_reader(cls: Any, data: st.DataObject) -> None:
    """For any value, our reading with the schema equals what TJSONProtocol reads."""
    from tests.core.test_tjson_identity import comparable

    struct = data.draw(struct_strategy(cls, VALID))
    encoded = serialize_v2_event(struct)
    ours = read_struct(json.loads(encoded), without_required(struct_shape(cls)))
    assert comparable(read_back(cls, encoded)) == comparable(to_thrift(ours, cls))


@pytest.mark.parametrize("cls", [Event, Checkout], ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_compiled_decoder_takes_thrifts_values(cls: Any, data: st.DataObject) -> None:
    """--schema: an event is taken without building its document, and reads as Thrift reads it."""
    from tests.core.test_tjson_identity import comparable

    struct = data.draw(struct_strategy(cls, VALID))
    struct.uuid = UUID
    encoded = serialize_v2_event(struct)
    reader = EventReader(without_required(struct_shape(cls)))  # Thrift does not check them
    (stored,) = decode_batch("2j", b"[" + encoded + b"]", reader)
    assert (UUID, UNREAD) == (stored.uuid, stored._document)
    assert comparable(read_back(cls, encoded)) == comparable(to_thrift(stored.document, cls))
