"""serialize_v2_event writes exactly Thrift's TJSONProtocol bytes, and valid JSON always.

The schema in ``tests/thrift/identity.thrift`` (generated into
``tests/thrift_gen``) holds every Thrift type in every position TJSONProtocol
treats differently: field value, list/set element, map key, map value, nested
containers, recursive structs, required fields and field ids declared out of
order. Hypothesis builds instances from each class's ``thrift_spec`` and
compares our bytes with ``TSerialization.serialize(s, TJSONProtocolFactory())``.

Where Thrift itself writes invalid JSON (NaN/infinite doubles as values, raw
control characters), ours must be valid JSON that Thrift's own reader turns
back into an equal struct.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Callable, Dict, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thrift.protocol.TJSONProtocol import TJSONProtocol, TJSONProtocolFactory
from thrift.Thrift import TType
from thrift.TSerialization import deserialize, serialize

from baseplate_events import EventSerializationError, serialize_v2_event
from baseplate_events.tjson import encode as tjson
from event_schemas.event.ttypes import (
    Device,
    Event,
    EventBatch,
    Experiment,
    Platform,
    Request,
    User,
)
from tests.thrift_gen.identity.ttypes import (
    Color,
    Everything,
    Leaf,
    Lists,
    Maps,
    Nested,
    Scalars,
    Scrambled,
    Sets,
    Tree,
)

FACTORY = TJSONProtocolFactory()
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies built from thrift_spec ----------------------------------------

#: Characters JSON needs escaped, and ones a careless encoder might: quotes,
#: backslash, the five short escapes, DEL, the line separators JavaScript
#: chokes on, a BOM, multi-byte and astral characters.
ESCAPE_HEAVY = '"\\/\b\f\n\r\t\x7f\u2028\u2029\ufeff\xe9\u20ac\U0001f600 {}[]:,'
#: Control characters TJSONProtocol writes raw, which makes its output invalid JSON.
RAW_CONTROLS = "".join(chr(c) for c in range(0x20) if chr(c) not in "\b\f\n\r\t")

VALID_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=RAW_CONTROLS)
    | st.sampled_from(ESCAPE_HEAVY),
    max_size=12,
)
ANY_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(ESCAPE_HEAVY + RAW_CONTROLS),
    max_size=12,
)
SPECIAL_DOUBLES = [0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3, 1e16, 1e17, 123.4]
FINITE_DOUBLES = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(SPECIAL_DOUBLES)
ANY_DOUBLES = st.floats() | st.sampled_from(SPECIAL_DOUBLES)


class Domain:
    """Which strings and doubles to draw: ones Thrift writes as valid JSON, or any."""

    def __init__(self, text: st.SearchStrategy[str], doubles: st.SearchStrategy[float]) -> None:
        self.text = text
        self.doubles = doubles
        self.structs: Dict[Any, st.SearchStrategy[Any]] = {}


VALID = Domain(VALID_TEXT, FINITE_DOUBLES)
ANY = Domain(ANY_TEXT, ANY_DOUBLES)

_INT_RANGES = {TType.BYTE: 8, TType.I16: 16, TType.I32: 32, TType.I64: 64}
_CONTAINERS = (TType.LIST, TType.SET, TType.MAP)


def value_strategy(ttype: int, args: Any, domain: Domain, depth: int) -> st.SearchStrategy[Any]:
    """Values of a Thrift type, as an application would hold them."""
    if ttype == TType.BOOL:
        return st.booleans()
    if ttype in _INT_RANGES:
        bits = _INT_RANGES[ttype]
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if ttype == TType.DOUBLE:
        return domain.doubles
    if ttype == TType.STRING:
        return st.binary(max_size=12) if args == "BINARY" else domain.text
    if ttype == TType.STRUCT:
        return struct_strategy(args[0], domain, depth + 1)
    if ttype in (TType.LIST, TType.SET):
        element = value_strategy(args[0], args[1], domain, depth + 1)
        if ttype == TType.SET and args[0] not in _CONTAINERS and args[0] != TType.STRUCT:
            return st.sets(element, max_size=4)
        return st.lists(element, max_size=4)  # Thrift writes a set from any iterable
    if ttype == TType.MAP:
        if args[0] == TType.DOUBLE:
            # As keys, non-finite doubles are quoted ("nan"): valid JSON, so in every domain.
            keys: st.SearchStrategy[Any] = ANY_DOUBLES
        else:
            keys = value_strategy(args[0], args[1], domain, depth + 1)
        values = value_strategy(args[2], args[3], domain, depth + 1)
        return st.dictionaries(keys, values, max_size=4)
    raise AssertionError(f"no strategy for Thrift type {ttype}")


def struct_strategy(cls: Any, domain: Domain, depth: int = 0) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with each field either None or a value of its type."""
    if depth > 3:
        return st.builds(cls)  # bound the recursion of Tree
    key = (cls, depth)
    if key not in domain.structs:
        fields = {}
        for field in cls.thrift_spec:
            if field is None:
                continue
            _, ttype, name, args = field[:4]
            fields[name] = st.none() | value_strategy(ttype, args, domain, depth)
        domain.structs[key] = st.builds(cls, **fields)
    return domain.structs[key]


# -- helpers ------------------------------------------------------------------


def thrift_bytes(struct: Any) -> bytes:
    return serialize(struct, FACTORY)  # type: ignore[no-any-return]


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def strict_json(data: bytes) -> Optional[Any]:
    """The parsed document, or None if ``data`` is not valid JSON (NaN and raw controls are not)."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except ValueError:
        return None


def comparable(value: Any) -> Any:
    """A form of a struct that compares equal when the data is equal, NaN included."""
    if hasattr(type(value), "thrift_spec"):
        # A reader fills in the default of a field that was not written (left None).
        fields = [f for f in type(value).thrift_spec if f]
        return (
            type(value).__name__,
            tuple(
                comparable(f[4] if getattr(value, f[2]) is None else getattr(value, f[2]))
                for f in fields
            ),
        )
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, (list, tuple)):
        return tuple(comparable(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(comparable(item) for item in value)
    if isinstance(value, dict):
        return frozenset((comparable(k), comparable(v)) for k, v in value.items())
    return value


def read_back(cls: Any, data: bytes) -> Any:
    """Decode ``data`` with Thrift's own TJSONProtocol reader."""
    return deserialize(cls(), data, TJSONProtocolFactory(string_length_limit=None))


IDENTITY_CLASSES = [Scalars, Lists, Sets, Maps, Nested, Scrambled, Tree, Everything, Event]
# Thrift's reader cannot rebuild a set of lists (lists are unhashable), so Nested is
# round-tripped with that one field left out (see test_invalid_json_...).
ROUND_TRIP_CLASSES = [Scalars, Lists, Sets, Maps, Scrambled, Tree, Event]


# -- byte identity ------------------------------------------------------------


@pytest.mark.parametrize("cls", IDENTITY_CLASSES, ids=lambda c: c.__name__)
def test_bytes_equal_tjsonprotocol_for_valid_json_input(cls: Any) -> None:
    """For every input Thrift writes as valid JSON, our bytes are exactly Thrift's."""

    @SETTINGS
    @given(struct_strategy(cls, VALID))
    def check(struct: Any) -> None:
        expected = thrift_bytes(struct)
        assert strict_json(expected) is not None, "the VALID domain must give valid JSON"
        assert expected == serialize_v2_event(struct)

    check()


@pytest.mark.parametrize("cls", ROUND_TRIP_CLASSES + [Nested], ids=lambda c: c.__name__)
def test_invalid_json_from_thrift_is_valid_json_from_us(cls: Any) -> None:
    """Where Thrift writes invalid JSON, ours is valid JSON that Thrift reads back equal."""

    @SETTINGS
    @given(struct_strategy(cls, ANY))
    def check(struct: Any) -> None:
        expected = thrift_bytes(struct)
        actual = serialize_v2_event(struct)
        if strict_json(expected) is not None:
            assert expected == actual
            return
        assert strict_json(actual) is not None
        if cls is Nested:
            struct.set_of_lists = None
            actual = serialize_v2_event(struct)
        assert comparable(struct) == comparable(read_back(cls, actual))

    check()


def test_everything_round_trips_through_thrifts_reader() -> None:
    """Any nested struct we write decodes back through Thrift's reader to an equal struct."""

    @SETTINGS
    @given(struct_strategy(Everything, ANY))
    def check(struct: Any) -> None:
        if struct.nested is not None:
            struct.nested.set_of_lists = None
        actual = serialize_v2_event(struct)
        assert strict_json(actual) is not None
        assert comparable(struct) == comparable(read_back(Everything, actual))

    check()


def test_field_ids_declared_out_of_order_are_written_sorted() -> None:
    """Fields come out in id order, as Thrift's generated write() emits them."""
    struct = Scrambled(nine="9", two=2, thirty=True, one=1.5, seventeen=Leaf(count=1))
    expected = (
        b'{"1":{"dbl":1.5},"2":{"i64":2},"9":{"str":"9"},'
        b'"17":{"rec":{"2":{"i32":1}}},"30":{"tf":1}}'
    )
    assert expected == serialize_v2_event(struct)
    assert thrift_bytes(struct) == serialize_v2_event(struct)


def test_unset_required_fields_are_skipped_like_thrift() -> None:
    """A required field left None is left out, as Thrift's write() does (it does not validate)."""
    struct = Scalars(a_bool=False)
    expected = b'{"1":{"tf":0},"13":{"str":"default \\"text\\""},"14":{"i32":5}}'
    assert expected == serialize_v2_event(struct)
    assert thrift_bytes(struct) == serialize_v2_event(struct)


def test_empty_struct_and_empty_containers() -> None:
    """Empty structs and containers keep their headers: {}, ["i32",0], ["str","str",0,{}]."""
    struct = Everything(
        lists=Lists(i32s=[], leaves=[]),
        maps=Maps(string_keys={}),
        tree=Tree(),
        scrambled=Scrambled(seventeen=Leaf()),
    )
    assert thrift_bytes(struct) == serialize_v2_event(struct)
    assert b'"2":{"rec":{"4":{"lst":["i32",0]},"10":{"lst":["rec",0]}}}' in serialize_v2_event(
        struct
    )


def test_other_container_types_are_accepted_like_thrift() -> None:
    """Tuples for lists, frozensets for sets, bytearray/memoryview for binary: Thrift's bytes."""
    struct = Everything(
        lists=Lists(strings=("a", "b"), leaves=(Leaf(name="x"),), binaries=[bytearray(b"\x01")]),
        sets=Sets(i64s=frozenset({1, 2}), strings=["list", "for", "a", "set"]),
        scalars=Scalars(a_binary=memoryview(b"bytes"), required_string="r", required_int=1),
    )
    assert thrift_bytes(struct) == serialize_v2_event(struct)


def test_sample_event_and_batch_match_thrift() -> None:
    """The sample schema's Event and the EventBatch the publisher sends match Thrift."""
    event = Event(
        source="web",
        action="click",
        noun="button",
        client_timestamp=1732790000123,
        uuid="3f1c2a9e-8b4d-4e8a-9c1f-2a7b6d5e4f30",
        user=User(user_id="t2_abc", logged_in=True, features={"a", "b"}),
        request=Request(user_agent="Mozilla/5.0", status_code=200),
        experiments=[Experiment(id=1, name="x", variant="y", bucket=-3)],
        tags={"page": "front"},
        value=0.75,
        payload=b"\xff\x00",
        measurements={"ttfb_ms": 123.4},
    )
    batch = EventBatch(events=[event, Event(source="other")])
    assert thrift_bytes(event) == serialize_v2_event(event)
    assert thrift_bytes(batch) == serialize_v2_event(batch)


# -- where Thrift's output is invalid JSON -------------------------------------


def test_non_finite_doubles_become_quoted_names() -> None:
    """NaN and the infinities are written "NaN"/"Infinity"/"-Infinity", which Thrift reads."""
    struct = Lists(doubles=[math.nan, math.inf, -math.inf, 1.0])
    expected = b'{"6":{"lst":["dbl",4,"NaN","Infinity","-Infinity",1]}}'
    assert expected == serialize_v2_event(struct)
    assert b'{"6":{"lst":["dbl",4,nan,inf,-inf,1]}}' == thrift_bytes(struct)
    assert comparable(struct) == comparable(read_back(Lists, serialize_v2_event(struct)))


def test_non_finite_double_keys_are_thrifts_quoted_text() -> None:
    """As map keys Thrift quotes nan/inf itself (valid JSON), so those bytes are kept."""
    struct = Maps(double_keys={math.nan: 1, math.inf: 2, -math.inf: 3})
    expected = b'{"6":{"map":["dbl","i64",3,{"nan":1,"inf":2,"-inf":3}]}}'
    assert expected == serialize_v2_event(struct)
    assert thrift_bytes(struct) == serialize_v2_event(struct)


def test_control_characters_are_escaped() -> None:
    """U+0000-U+001F other than the short escapes become \\u00XX; DEL and U+2028 stay raw."""
    struct = Leaf(name="\x00\x01\x1f\b\f\n\r\t\x7f\u2028")
    expected = b'{"1":{"str":"\\u0000\\u0001\\u001f\\b\\f\\n\\r\\t\x7f\xe2\x80\xa8"}}'
    assert expected == serialize_v2_event(struct)
    assert struct == read_back(Leaf, serialize_v2_event(struct))


# -- integers from floats ------------------------------------------------------


def test_float_in_i64_gives_its_integer_part() -> None:
    """The seed fills client_timestamp with time.time() * 1000: the integer part is written."""
    now = time.time() * 1000
    assert (
        b'{"4":{"i64":%d}}' % int(now) == serialize_v2_event(Event(client_timestamp=now))
    )
    assert b'{"4":{"i64":1732790000123}}' == serialize_v2_event(
        Event(client_timestamp=1732790000123.9)
    )
    assert b'{"4":{"i64":-1}}' == serialize_v2_event(Event(client_timestamp=-1.9))


# -- UUID fields (Thrift >= 0.19; Debian's 0.17 compiler cannot generate them) --


class WithUuid:
    """What a newer Thrift compiler generates for ``1: uuid id; 2: list<uuid> ids``."""

    thrift_spec = (
        None,
        (1, getattr(TType, "UUID", 16), "id", None, None),
        (2, TType.LIST, "ids", (getattr(TType, "UUID", 16), None, False), None),
    )

    def __init__(self, id: Any = None, ids: Any = None) -> None:
        self.id = id
        self.ids = ids

    def write(self, oprot: TJSONProtocol) -> None:
        oprot.writeStructBegin("WithUuid")
        if self.id is not None:
            oprot.writeFieldBegin("id", TType.UUID, 1)
            oprot.writeUuid(self.id)
            oprot.writeFieldEnd()
        if self.ids is not None:
            oprot.writeFieldBegin("ids", TType.LIST, 2)
            oprot.writeListBegin(TType.UUID, len(self.ids))
            for item in self.ids:
                oprot.writeUuid(item)
            oprot.writeListEnd()
            oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()


@pytest.mark.skipif(not hasattr(TType, "UUID"), reason="this Thrift has no uuid type")
def test_uuid_fields_match_thrift() -> None:
    """UUID objects and UUID strings are written as Thrift writes them."""
    value = uuid.UUID("3f1c2a9e-8b4d-4e8a-9c1f-2a7b6d5e4f30")
    struct = WithUuid(id=value, ids=[value, "3F1C2A9E-8B4D-4E8A-9C1F-2A7B6D5E4F30"])
    assert thrift_bytes(struct) == serialize_v2_event(struct)


def test_a_uuid_field_refuses_a_string_that_is_no_uuid() -> None:
    """A uuid field holding any other string names the field."""
    with pytest.raises(EventSerializationError) as info:
        serialize_v2_event(WithUuid(id="not-a-uuid"))
    assert "WithUuid.id: expected a UUID, got the string 'not-a-uuid'" == str(info.value)


# -- compile once, fall back for what has no thrift_spec -----------------------


def test_encoder_is_compiled_once_per_class() -> None:
    """The compiled encoder is cached per struct class."""
    assert tjson.encoder_for(Everything) is tjson.encoder_for(Everything)


class HandWritten:
    """A struct with a write() but no thrift_spec: Thrift's own protocol encodes it."""

    def write(self, oprot: TJSONProtocol) -> None:
        oprot.writeStructBegin("HandWritten")
        oprot.writeFieldBegin("n", TType.I32, 3)
        oprot.writeI32(7)
        oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()


def test_struct_without_thrift_spec_uses_thrifts_protocol() -> None:
    """A struct the compiler cannot read still gets Thrift's exact bytes."""
    assert b'{"3":{"i32":7}}' == serialize_v2_event(HandWritten())


# -- wrong types name the field ------------------------------------------------

WRONG: Dict[str, Callable[[], Any]] = {
    "Event.user.logged_in: expected a bool, got int": lambda: Event(user=User(logged_in=1)),
    "Event.client_timestamp: expected an integer (i64), got str": lambda: Event(
        client_timestamp="now"
    ),
    "Event.client_timestamp: expected an integer (i64), got bool": lambda: Event(
        client_timestamp=True
    ),
    "Event.client_timestamp: expected an integer (i64), got float inf": lambda: Event(
        client_timestamp=math.inf
    ),
    "Event.client_timestamp: 9223372036854775808 is out of range for i64 "
    "(-9223372036854775808..9223372036854775807)": lambda: Event(client_timestamp=2**63),
    "Event.source: expected a string, got bytes": lambda: Event(source=b"web"),
    "Event.source: string holds '\\ud800', which UTF-8 cannot encode (a lone surrogate)": (
        lambda: Event(source="a\ud800")
    ),
    "Event.payload: expected bytes (binary), got str": lambda: Event(payload="text"),
    "Event.value: expected a number (double), got str": lambda: Event(value="1.5"),
    "Event.value: expected a number (double), got bool": lambda: Event(value=True),
    "Event.user: expected struct User, got Leaf": lambda: Event(user=Leaf()),
    "Event.device.platform: expected an integer (i32), got str": lambda: Event(
        device=Device(platform="WEB")
    ),
    "Event.experiments: expected a list, got str": lambda: Event(experiments="abc"),
    "Event.experiments[0]: is None inside a container; Thrift cannot encode it": lambda: Event(
        experiments=[None]
    ),
    "Event.experiments[1]: expected struct Experiment, got Leaf": lambda: Event(
        experiments=[Experiment(), Leaf()]
    ),
    "Event.experiments[0].bucket: 200 is out of range for i8 (-128..127)": lambda: Event(
        experiments=[Experiment(bucket=200)]
    ),
    "Event.tags: expected a dict (map), got list": lambda: Event(tags=[("a", "b")]),
    "Event.tags['a']: expected a string, got int": lambda: Event(tags={"a": 1}),
    "Event.tags key 1: expected a string, got int": lambda: Event(tags={1: "a"}),
    "Event.user.features: expected a set, got str": lambda: Event(user=User(features="ab")),
    "Everything.nested.list_of_lists[0][1]: expected an integer (i32), got str": lambda: (
        Everything(nested=Nested(list_of_lists=[[1, "x"]]))
    ),
    "Everything.maps.double_keys key 'x': expected a number (double), got str": lambda: (
        Everything(maps=Maps(double_keys={"x": 1}))
    ),
    "Everything.maps.bool_keys key 1: expected a bool, got int": lambda: Everything(
        maps=Maps(bool_keys={1: "x"})
    ),
    "Everything.maps.leaf_values['k'].count: expected an integer (i32), got str": lambda: (
        Everything(maps=Maps(leaf_values={"k": Leaf(count="x")}))
    ),
    "Everything.tree.children[0].children[0].label: expected a string, got int": lambda: (
        Everything(tree=Tree(children=[Tree(children=[Tree(label=5)])]))
    ),
    "Everything.scalars.a_color: expected an integer (i32), got str": lambda: Everything(
        scalars=Scalars(a_color="RED")
    ),
    "event: expected a Thrift struct, got int": lambda: 42,
    "event: expected a Thrift struct, got dict": lambda: {"source": "web"},
}


@pytest.mark.parametrize("message", list(WRONG), ids=range(len(WRONG)))
def test_wrong_value_raises_naming_the_field(message: str) -> None:
    """A value of the wrong type raises EventSerializationError naming its path."""
    with pytest.raises(EventSerializationError) as info:
        serialize_v2_event(WRONG[message]())
    assert message == str(info.value)


def test_enum_values_are_written_as_their_integers() -> None:
    """Enum fields hold the generated class's ints; they are written as i32."""
    struct = Everything(scalars=Scalars(a_color=Color.NEGATIVE, required_string="", required_int=0))
    assert thrift_bytes(struct) == serialize_v2_event(struct)
    assert b'"10":{"i32":-7}' in serialize_v2_event(struct)
    assert b'{"8":{"rec":{"2":{"i32":1}}}}' == serialize_v2_event(
        Event(device=Device(platform=Platform.WEB))
    )
