"""Read any TJSON struct into a generic document: field id → typed value.

The collector does not need the event's Thrift class to take an event: the
TJSON protocol tags every value with its type, so the JSON that the library
parser (:func:`json.loads`) returns is enough to check and keep it. A struct
``{"1":{"str":"shop"},"6":{"rec":{"1":{"i64":3}}}}`` becomes the document
``{1: "shop", 6: {1: 3}}``:

========  =======================================  ===================
TJSON     on the wire                              in the document
========  =======================================  ===================
``tf``    ``1`` / ``0``                            bool
``i8``..  a JSON integer within the type's range   int
``i64``
``dbl``   a finite JSON number, or ``"NaN"``,      float
          ``"Infinity"``, ``"-Infinity"``
``str``   a JSON string (binary: its base64)       str (binary: the base64)
``uid``   a JSON string holding a UUID             str
``rec``   a JSON object of fields                  dict: field id → value
``lst``   ``[type, count, v1, ...]``               list
``set``   ``[type, count, v1, ...]``               list
``map``   ``[ktype, vtype, count, {k: v, ...}]``   dict (keys typed)
========  =======================================  ===================

With a schema (:mod:`baseplate_events.collector.decode.schema`), the same walk also
checks every known field's type against the struct's ``thrift_spec``, that
its required fields are present, and that a ``binary`` value is base64 as
Thrift's reader decodes it; without one, any well-formed struct is taken.
Anything else raises :class:`TJSONError`, whose message names the field by its
path of ids (and names, with a schema): ``field 6.1 (cart.items): expected
"i32", got "str"``.

This walk is the grammar's reference and gives the reasons: the collector
checks most events with a msgspec decoder compiled from the struct's shape
(:mod:`baseplate_events.collector.decode.typed`), which takes only what this walk
takes, and leaves the rest to it. Why not Thrift's own ``TJSONProtocol``: it
needs the class, and it costs 200-300 µs per event (``python -m
benchmarks.collector_decode``); the wire format is still parsed by a library
JSON parser, only its type tags are read here.
"""
from __future__ import annotations

import math
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...tjson.tags import CONTAINER_TAGS, TAGS
from .binary import base64_problem
from .uuids import canonical_uuid

__all__ = [
    "MAX_DEPTH",
    "BareConstant",
    "FieldShape",
    "StructShape",
    "TJSONError",
    "canonical_uuid",
    "read_struct",
]

#: How deeply structs and containers may nest in one event.
MAX_DEPTH = 64

_INT_RANGES = {
    "i8": (-(2**7), 2**7 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
}
_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: the largest finite double: a JSON number beyond it (``1e400``, 400 digits) is no "dbl"
_DBL_MAX = sys.float_info.max
_TOO_LARGE = ('too large for "dbl" (the largest double is about 1.8e308); TJSON writes '
              'an infinite value "Infinity" or "-Infinity", as a string')
#: a map key of type "dbl": a JSON number, or Thrift's spellings of the special doubles
_DOUBLE_KEY = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
                         r"|nan|inf|-inf|NaN|Infinity|-Infinity", re.ASCII)
_CONTAINERS = CONTAINER_TAGS
#: "1" → 1 for the field ids seen so far (a handful per schema); checked once each
_FIELD_IDS: Dict[str, int] = {}


class TJSONError(ValueError):
    """A value that is not well-formed TJSON (or not what the schema says)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: (field id or list index, field name or None), innermost first
        self.path: List[Tuple[Any, Optional[str]]] = []

    def __str__(self) -> str:
        if not self.path:
            return self.message
        outer = self.path[::-1]
        ids = ".".join(str(part) if isinstance(part, int) else f"[{part}]" for part, _ in outer)
        names = [name for _, name in outer]
        named = ""
        if all(name is not None for name in names):
            named = " (" + ".".join(str(name) for name in names) + ")"
        return f"field {ids}{named}: {self.message}"


class BareConstant:
    """A bare ``NaN``, ``Infinity`` or ``-Infinity`` in the JSON text, as the parser saw it.

    They are not JSON, but the library parser takes them: it is given this class
    as ``parse_constant``, so that the event holding one is refused naming the
    field (TJSON writes these doubles as strings, ``"NaN"``).
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:  # as it was written, for messages: "the lst says NaN elements"
        return self.text


class StructShape:
    """What a schema says about one struct: its fields by id and its required ids."""

    __slots__ = ("fields", "name", "required")

    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: Dict[int, FieldShape] = {}
        self.required: Tuple[int, ...] = ()


class FieldShape:
    """The type a schema gives a field or a container element."""

    __slots__ = ("binary", "element", "key", "name", "struct", "tag")

    def __init__(
        self,
        tag: str,
        name: Optional[str] = None,
        struct: Optional[StructShape] = None,
        element: Optional["FieldShape"] = None,
        key: Optional["FieldShape"] = None,
        binary: bool = False,
    ) -> None:
        self.tag = tag
        self.name = name
        self.struct = struct  # for "rec"
        self.element = element  # for "lst" and "set"; the value type for "map"
        self.key = key  # for "map"
        self.binary = binary  # a "str" the schema declares binary: base64 on the wire


def _kind(value: Any) -> str:
    """How a JSON value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if type(value) is BareConstant:
        return f"a bare {value.text}, which is not JSON"
    return {dict: "an object", list: "an array", str: "a string", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _field_id(key: str) -> int:
    fid = _FIELD_IDS.get(key)
    if fid is not None:
        return fid
    digits = key[1:] if key.startswith("-") else key
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 5:
        raise TJSONError(f"{key[:32]!r} is not a field id (a decimal i16)")
    fid = int(key)
    if not -(2**15) <= fid < 2**15:
        raise TJSONError(f"{key!r} is not a field id (a decimal i16)")
    if len(_FIELD_IDS) < 4096:  # bounded: ids come from the network
        _FIELD_IDS[key] = fid
    return fid


def read_struct(obj: Any, shape: Optional[StructShape] = None, depth: int = 0) -> Dict[int, Any]:
    """The document of one TJSON struct, parsed by ``json.loads``; checked against ``shape``.

    Parse with ``parse_constant=BareConstant`` to have a bare NaN or Infinity
    refused by name (the parser's own NaN is refused too, less precisely).

    :raises TJSONError: not a well-formed struct, or (with ``shape``) a field of
        the wrong type or a required field missing.
    """
    if type(obj) is not dict:
        raise TJSONError(f"expected a struct (a JSON object), got {_kind(obj)}")
    if depth > MAX_DEPTH:
        raise TJSONError(f"nested more than {MAX_DEPTH} levels deep")
    known = shape.fields if shape is not None else None
    document: Dict[int, Any] = {}
    for key, typed in obj.items():
        fid = _FIELD_IDS.get(key)
        if fid is None:
            fid = _field_id(key)
        field = known.get(fid) if known is not None else None
        try:
            if type(typed) is not dict or len(typed) != 1:
                raise TJSONError('expected {"TYPE": value}, e.g. {"str": "x"}')
            ((tag, value),) = typed.items()
            if field is not None and tag != field.tag:
                raise TJSONError(f"expected {field.tag!r}, got {tag!r}")
            # The common cases inline (a call per field costs a third of the walk).
            kind = type(value)
            if kind is str and tag == "str" and (field is None or not field.binary):
                document[fid] = value
            elif kind is int and tag in _INT_RANGES:
                low, high = _INT_RANGES[tag]
                if not low <= value <= high:
                    raise TJSONError(f"{value} is out of range for {tag!r} ({low}..{high})")
                document[fid] = value
            else:
                document[fid] = _read_value(tag, value, field, depth)
        except TJSONError as error:
            error.path.append((fid, field.name if field is not None else None))
            raise
    if shape is not None and shape.required:
        missing = [fid for fid in shape.required if fid not in document]
        if missing:
            names = ", ".join(f"{shape.fields[fid].name} (field {fid})" for fid in missing)
            raise TJSONError(f"{shape.name}: required field missing: {names}")
    return document


def _read_value(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> Any:
    reader = _READERS.get(tag)
    if reader is None:
        raise TJSONError(f"unknown type {tag[:16]!r}; expected one of {', '.join(TAGS)}")
    return reader(tag, value, field, depth)


def _read_int(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> int:
    if type(value) is not int:
        raise TJSONError(f"expected an integer for {tag!r}, got {_kind(value)}")
    low, high = _INT_RANGES[tag]
    if not low <= value <= high:
        raise TJSONError(f"{value} is out of range for {tag!r} ({low}..{high})")
    return value


def _read_double(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> float:
    kind = type(value)
    if kind is float:
        if -_DBL_MAX <= value <= _DBL_MAX:
            return value  # type: ignore[no-any-return]
        if value != value:  # a parser given no parse_constant=BareConstant read a bare NaN
            raise TJSONError('bare NaN is not JSON; TJSON writes it "NaN", as a string')
        raise TJSONError(f"a number {_TOO_LARGE}")  # the parser reads 1e400 as inf
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise TJSONError(f"an integer {_TOO_LARGE}") from None
    if kind is str and value in _SPECIAL_DOUBLES:
        return _SPECIAL_DOUBLES[value]
    if kind is BareConstant:
        raise TJSONError(f'bare {value.text} is not JSON; TJSON writes it "{value.text}", '
                         f"as a string")
    raise TJSONError(f'expected a number, "NaN", "Infinity" or "-Infinity" for "dbl", '
                     f"got {_kind(value)}")


def _read_bool(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> bool:
    if type(value) is not int or value not in (0, 1):
        raise TJSONError(f'expected 1 or 0 for "tf", got {_kind(value)}')
    return value == 1


def _read_string(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> str:
    if type(value) is not str:
        raise TJSONError(f'expected a string for "str", got {_kind(value)}')
    if field is not None and field.binary:
        _check_binary(value)
    return value  # type: ignore[no-any-return]


def _check_binary(value: str) -> None:
    problem = base64_problem(value)
    if problem is not None:
        raise TJSONError(problem)


def _read_uuid(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> str:
    canonical = canonical_uuid(value)
    if canonical is None:
        raise TJSONError(f'expected a UUID string for "uid", got {_kind(value)}')
    return canonical


def _read_rec(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> Dict[int, Any]:
    return read_struct(value, field.struct if field is not None else None, depth + 1)


def _element_tag(tag: Any, expected: Optional[FieldShape], what: str) -> None:
    if not isinstance(tag, str) or tag not in _READERS:
        raise TJSONError(f"{what} type {str(tag)[:16]!r} is not a TJSON type")
    if expected is not None and tag != expected.tag:
        raise TJSONError(f"expected {what} type {expected.tag!r}, got {tag!r}")


def _read_list(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> List[Any]:
    if type(value) is not list or len(value) < 2:
        raise TJSONError(f'expected [type, count, ...] for "{tag}", got {_kind(value)}')
    element_tag, count = value[0], value[1]
    element = field.element if field is not None else None
    _element_tag(element_tag, element, "element")
    if type(count) is not int or count != len(value) - 2:
        raise TJSONError(f"the {tag} says {count!r} elements but holds {len(value) - 2}")
    if depth >= MAX_DEPTH:
        raise TJSONError(f"nested more than {MAX_DEPTH} levels deep")
    items = []
    reader = _READERS[element_tag]
    for index in range(2, len(value)):
        try:
            items.append(reader(element_tag, value[index], element, depth + 1))
        except TJSONError as error:
            error.path.append((str(index - 2), None))
            raise
    return items


def _read_map(tag: str, value: Any, field: Optional[FieldShape], depth: int) -> Dict[Any, Any]:
    if type(value) is not list or len(value) != 4 or type(value[3]) is not dict:
        raise TJSONError(f'expected [key type, value type, count, {{...}}] for "map", '
                         f"got {_kind(value)}")
    key_tag, value_tag, count, pairs = value
    key_shape = field.key if field is not None else None
    _element_tag(key_tag, key_shape, "key")
    element = field.element if field is not None else None
    _element_tag(value_tag, element, "value")
    if key_tag not in _KEY_READERS:
        raise TJSONError(f"map keys of type {key_tag!r} are not supported")
    if type(count) is not int or count != len(pairs):
        raise TJSONError(f"the map says {count!r} entries but holds {len(pairs)}")
    if depth >= MAX_DEPTH:
        raise TJSONError(f"nested more than {MAX_DEPTH} levels deep")
    read_key, reader = _KEY_READERS[key_tag], _READERS[value_tag]
    binary_keys = key_shape is not None and key_shape.binary
    document = {}
    for key, item in pairs.items():
        try:
            if binary_keys:
                _check_binary(key)
            document[read_key(key_tag, key)] = reader(value_tag, item, element, depth + 1)
        except TJSONError as error:
            error.path.append((repr(key[:32]), None))
            raise
    return document


def _int_key(tag: str, key: str) -> int:
    digits = key[1:] if key.startswith("-") else key
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        raise TJSONError(f"map key {key[:32]!r} is not an integer")
    return _read_int(tag, int(key), None, 0)


def _double_key(tag: str, key: str) -> float:
    # float() alone also takes "1_0", " 1 ", "١" and "INFINITY": ASCII number syntax only.
    if _DOUBLE_KEY.fullmatch(key) is None:
        raise TJSONError(f"map key {key[:32]!r} is not a number")
    return float(key)  # also "nan", "inf", "-inf" (Thrift's keys) and "NaN", "Infinity"


def _bool_key(tag: str, key: str) -> bool:
    if key not in ("0", "1"):
        raise TJSONError(f"map key {key[:32]!r} is not 1 or 0")
    return key == "1"


_READERS: Dict[str, Callable[[str, Any, Optional[FieldShape], int], Any]] = {
    "tf": _read_bool,
    "i8": _read_int,
    "i16": _read_int,
    "i32": _read_int,
    "i64": _read_int,
    "dbl": _read_double,
    "str": _read_string,
    "uid": _read_uuid,
    "rec": _read_rec,
    "lst": _read_list,
    "set": _read_list,
    "map": _read_map,
}
_KEY_READERS: Dict[str, Callable[[str, str], Any]] = {
    "str": lambda tag, key: key,
    "uid": lambda tag, key: _read_uuid(tag, key, None, 0),
    "i8": _int_key,
    "i16": _int_key,
    "i32": _int_key,
    "i64": _int_key,
    "dbl": _double_key,
    "tf": _bool_key,
}
