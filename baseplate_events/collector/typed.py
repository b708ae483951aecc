"""A struct's shape compiled into msgspec types: TJSON events checked in C.

:func:`~.documents.read_struct` walks an event's parsed JSON in Python,
one value at a time, and gives the exact reason for anything wrong. For a
sink that keeps only the event's bytes and uuid, the collector instead
decodes the event with a msgspec decoder compiled from the struct's shape
(:class:`~.documents.StructShape`, from ``--schema`` or learned from the
events themselves): the fields become a ``msgspec.Struct`` keyed by field id,
each ``{"TAG": value}`` a one-field Struct that forbids any other key, the
integer ranges, ``tf``'s 1 and 0 and the UUID spellings msgspec constraints;
a container's head (``[type, count, ...]``) is checked by a small Python
hook, and the values inside are typed again. So the whole event is checked
while it is parsed.

The compiled decoder takes only events :func:`~.documents.read_struct`
takes, with the same values: anything it refuses (an unknown field id, a
field id written ``"01"``, a wrong type, a bad count, a NaN...) is read
again by :func:`~.documents.read_struct`, which takes it or says why not.
Tests hold the two to each other and to Thrift's own reader.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType
from typing_extensions import Annotated

from .documents import (
    _INT_RANGES,
    _SPECIAL_DOUBLES,
    _UUID_SPELLING,
    FieldShape,
    StructShape,
    canonical_uuid,
)

__all__ = ["MAX_COMPILES", "TypedReader", "Untypable", "compile_shape", "learn_shape"]

_DBL_MAX = sys.float_info.max
_UUID_PATTERN = "^(?:" + _UUID_SPELLING.pattern + r")\Z"
_UUID = Annotated[str, Meta(pattern=_UUID_PATTERN)]
#: how deeply a compiled type nests (read_struct's own limit is MAX_DEPTH)
_MAX_DEPTH = 32


class Untypable(Exception):
    """A shape with no msgspec type (a map keyed by structs...): read_struct serves it."""


class _Bad(ValueError):
    """A container head or element that read_struct would judge: decode it again there."""


def _scalar(tag: str) -> Any:
    """The msgspec type of a scalar's JSON value."""
    if tag in _INT_RANGES:
        low, high = _INT_RANGES[tag]
        return Annotated[int, Meta(ge=low, le=high)]
    if tag == "tf":
        return Literal[0, 1]
    if tag == "str":
        return str
    if tag == "uid":
        return _UUID
    if tag == "dbl":
        return Union[float, Literal["NaN", "Infinity", "-Infinity"]]
    raise Untypable(tag)


class _Compiler:
    def __init__(self) -> None:
        self.structs: Dict[int, Any] = {}
        self.counter = 0

    def struct(self, shape: StructShape, depth: int) -> Any:
        known = self.structs.get(id(shape))
        if known is not None:
            return known
        if depth > _MAX_DEPTH:
            raise Untypable("nesting")
        self.counter += 1
        name = f"{shape.name}_{self.counter}"
        # Placeholder for recursion: a recursive shape is read by read_struct.
        self.structs[id(shape)] = None
        fields: List[Any] = []
        checks: List[Tuple[str, str, Callable[[Any], None]]] = []
        for fid, field in sorted(shape.fields.items()):
            wrapped, hook = self.tagged(field, depth)
            attribute = f"f{fid}".replace("-", "_")
            if hook is not None:
                checks.append((attribute, field.tag, hook))
            if fid in shape.required:
                fields.append((attribute, wrapped))
            else:
                fields.append((attribute, Union[wrapped, UnsetType], UNSET))
        rename = {f"f{fid}".replace("-", "_"): str(fid) for fid in shape.fields}
        namespace: Dict[str, Any] = {}
        if checks:
            namespace["__post_init__"] = _struct_hook(checks)
        cls = msgspec.defstruct(name, fields, rename=rename, forbid_unknown_fields=True,
                                gc=False, namespace=namespace)
        self.structs[id(shape)] = cls
        return cls

    def tagged(self, field: FieldShape, depth: int
               ) -> Tuple[Any, Optional[Callable[[Any], None]]]:
        """``{"TAG": value}``: a Struct whose only field is the tag; the check of its value."""
        value_type, hook = self.value(field, depth)
        self.counter += 1
        wrapper = msgspec.defstruct(f"T{self.counter}", [(field.tag, value_type)],
                                    forbid_unknown_fields=True, gc=False)
        return wrapper, hook

    def value(self, field: FieldShape, depth: int
              ) -> Tuple[Any, Optional[Callable[[Any], None]]]:
        """(msgspec type of a value of ``field``, a check of what msgspec cannot say, or None)."""
        tag = field.tag
        if tag == "rec":
            if field.struct is None:
                raise Untypable("rec")
            cls = self.struct(field.struct, depth + 1)
            if cls is None:
                raise Untypable("recursive")
            return cls, None
        if tag in ("lst", "set"):
            element = field.element
            if element is None:
                raise Untypable(tag)
            item, struct, hook = self.item(element, depth)
            return List[item], _list_check(element.tag, struct, hook)  # type: ignore[valid-type]
        if tag == "map":
            key, element = field.key, field.element
            if key is None or element is None:
                raise Untypable(tag)
            key_type = _KEY_TYPES.get(key.tag)
            if key_type is None:
                raise Untypable("map key")
            if element.tag in _SCALARS:
                inner, inner_hook = _scalar(element.tag), None
            else:
                inner, inner_hook = self.value(element, depth + 1)
            pairs = Dict[key_type, inner]  # type: ignore[valid-type]
            tags = Literal[key.tag, element.tag]  # type: ignore[valid-type]
            return (List[Union[tags, int, pairs]],  # type: ignore[valid-type]
                    _map_check(key.tag, element.tag, inner_hook))
        return _scalar(tag), None

    def item(self, element: FieldShape, depth: int
             ) -> Tuple[Any, Any, Optional[Callable[[Any], None]]]:
        """(type of any item of ``[tag, count, v1, ...]``, the struct class, the items' check)."""
        tag = element.tag
        if tag in _INT_RANGES:  # the count is within the range too, or read_struct judges
            return Union[Literal[tag], _scalar(tag)], None, None  # type: ignore[valid-type]
        if tag == "tf":
            return Union[Literal[tag], int], None, None  # type: ignore[valid-type]
        if tag in ("str", "uid"):
            return Union[str, int], None, None
        if tag == "dbl":
            return Union[str, int, float], None, None
        inner, hook = self.value(element, depth + 1)
        struct = inner if tag == "rec" else None
        return Union[Literal[tag], int, inner], struct, hook  # type: ignore[valid-type]


_SCALARS = ("tf", "i8", "i16", "i32", "i64", "dbl", "str", "uid")
_KEY_TYPES: Dict[str, Any] = {
    "str": str,
    "uid": _UUID,
    **{tag: Annotated[int, Meta(ge=low, le=high)] for tag, (low, high) in _INT_RANGES.items()},
}


def _struct_hook(checks: List[Tuple[str, str, Callable[[Any], None]]]) -> Any:
    """A struct's ``__post_init__`` checking the heads of all its containers.

    One hook per struct, its lines written out once per schema (a call per
    container, or a loop over them, cost as much as the parse itself).
    """
    lines = ["def __post_init__(self):"]
    scope: Dict[str, Any] = {"UNSET": UNSET}
    for number, (attribute, tag, check) in enumerate(checks):
        scope[f"check{number}"] = check
        lines += [f"    value = self.{attribute}",
                  "    if value is not UNSET:",
                  f"        check{number}(value.{tag})"]
    exec("\n".join(lines), scope)  # noqa: S102 - attribute names are f<digits>, tags from a table
    return scope["__post_init__"]


def _list_check(tag: str, struct: Any, hook: Optional[Callable[[Any], None]]
                ) -> Callable[[Any], None]:
    """The check of ``[tag, count, v1, ...]`` once msgspec has typed its items.

    msgspec typed each item as the element type, the tag or an int: this
    says the tag and count are where they belong and the items all elements.
    """
    if tag in _INT_RANGES:
        def ints(value: List[Any]) -> None:  # msgspec checked the range of every int
            n = len(value) - 2
            if (n < 0 or value[0] != tag or value[1] != n or type(value[1]) is not int
                    or value.count(tag) != 1):
                raise _Bad()
        return ints
    if tag == "str":
        def strings(value: List[Any]) -> None:  # join() of anything but str raises TypeError
            n = len(value) - 2
            if n < 0 or value[0] != tag or value[1] != n or type(value[1]) is not int:
                raise _Bad()
            "".join(value[2:])
        return strings
    if struct is not None:
        def structs(value: List[Any]) -> None:
            n = len(value) - 2
            if n < 0 or value[0] != tag or value[1] != n or type(value[1]) is not int:
                raise _Bad()
            if n and set(map(type, value[2:])) != {struct}:
                raise _Bad()
        return structs
    uuid = _UUID_SPELLING.fullmatch

    def check(value: List[Any]) -> None:
        n = len(value) - 2
        if n < 0 or value[0] != tag or value[1] != n or type(value[1]) is not int:
            raise _Bad()
        if not n:
            return
        items = value[2:]
        kinds = set(map(type, items))
        if tag == "tf":
            if kinds != {int} or not set(items) <= {0, 1}:
                raise _Bad()
        elif tag == "dbl":
            for item in items:
                kind = type(item)
                if kind is str:
                    if item not in _SPECIAL_DOUBLES:
                        raise _Bad()
                elif kind is int and not -_DBL_MAX <= item <= _DBL_MAX:
                    raise _Bad()
        elif tag == "uid":
            if kinds != {str} or not all(uuid(item) for item in items):
                raise _Bad()
        else:  # lists, sets and maps
            if kinds != {list}:
                raise _Bad()
            if hook is not None:
                for item in items:
                    hook(item)

    return check


def _map_check(key_tag: str, value_tag: str, hook: Optional[Callable[[Any], None]]
               ) -> Callable[[Any], None]:
    """The check of ``[key type, value type, count, {...}]`` once msgspec has typed the pairs."""

    def check(value: List[Any]) -> None:
        if (len(value) != 4 or value[0] != key_tag or value[1] != value_tag
                or type(value[2]) is not int or type(value[3]) is not dict
                or value[2] != len(value[3])):
            raise _Bad()
        if hook is not None:
            for item in value[3].values():
                hook(item)

    return check


def compile_shape(shape: StructShape) -> Callable[[bytes], Any]:
    """A decoder of one event's bytes that checks it against ``shape`` as it parses.

    It raises ``msgspec.DecodeError`` (``ValidationError`` included) for
    anything :func:`~.documents.read_struct` would have to judge.

    :raises Untypable: the shape cannot be typed (recursive structs, maps
        keyed by containers, nesting past 32).
    """
    cls = _Compiler().struct(shape, 0)
    return msgspec.json.Decoder(cls).decode


def learn_shape(document: Any, shape: StructShape) -> bool:
    """Widen ``shape`` by the type tags of a parsed TJSON struct read_struct took.

    Field by field; a field seen before with another tag keeps the first (such
    an event keeps going to read_struct). True if anything was added.
    """
    changed = False
    for key, typed in document.items():
        ((tag, value),) = typed.items()
        fid = int(key)
        field = shape.fields.get(fid)
        if field is None:
            field = shape.fields[fid] = FieldShape(tag, None)
            changed = True
        changed = _learn_value(field, tag, value) or changed
    return changed


def _learn_value(field: FieldShape, tag: str, value: Any) -> bool:
    if field.tag != tag:
        return False
    changed = False
    if tag == "rec":
        if field.struct is None:
            field.struct = StructShape("Learned")
            changed = True
        return learn_shape(value, field.struct) or changed
    if tag in ("lst", "set"):
        if field.element is None:
            field.element = FieldShape(value[0])
            changed = True
        for item in value[2:]:
            changed = _learn_value(field.element, value[0], item) or changed
    elif tag == "map":
        if field.key is None or field.element is None:
            field.key, field.element = FieldShape(value[0]), FieldShape(value[1])
            changed = True
        for item in value[3].values():
            changed = _learn_value(field.element, value[1], item) or changed
    return changed


#: how often a reader with no schema compiles a wider learned shape, at most
MAX_COMPILES = 32
#: how many fields a learned shape holds, at most (ids come from the network)
MAX_LEARNED_FIELDS = 2048


class TypedReader:
    """An :class:`~.batches.EventReader`'s compiled decoder, with the event's uuid.

    With a schema, compiled once from it. Without one, compiled from the
    shapes of the events taken so far (:func:`learn_shape`): an event of a
    shape not yet seen goes to read_struct, and if taken widens the learned
    shape, compiled again (at most :data:`MAX_COMPILES` times).

    :meth:`check` answers an event's canonical uuid if the compiled decoder
    takes the event and finds its uuid, else None: read_struct then judges.
    """

    def __init__(self, schema: Optional[StructShape], uuid_id: Optional[int]) -> None:
        self.learning = schema is None
        self.shape = schema if schema is not None else StructShape("Learned")
        self.uuid_id = uuid_id
        self.compiles = 0
        self.fields = 0
        self._lock = threading.Lock()
        self.check: Callable[[bytes], Optional[str]] = _never
        if schema is not None:
            self._compile()

    def _compile(self) -> None:
        try:
            cls = _Compiler().struct(self.shape, 0)
        except Untypable:
            self.check = _never
            return
        self.compiles += 1
        decode = msgspec.json.Decoder(cls).decode
        self.check = _uuid_check(decode, self.shape, self.uuid_id)

    def learn(self, parsed: Dict[str, Any]) -> None:
        """Widen the learned shape by an event read_struct took, and compile it again."""
        if not self.learning or self.compiles >= MAX_COMPILES:
            return
        with self._lock:
            if self.compiles >= MAX_COMPILES or self.fields > MAX_LEARNED_FIELDS:
                return
            self.fields += _count_fields(parsed)
            if learn_shape(parsed, self.shape):
                self._compile()


def _never(raw: bytes) -> Optional[str]:
    return None


def _count_fields(parsed: Any) -> int:
    return len(parsed) if type(parsed) is dict else 0


def _uuid_check(decode: Callable[[bytes], Any], shape: StructShape, uuid_id: Optional[int]
                ) -> Callable[[bytes], Optional[str]]:
    """``check(raw)``: the decoded event's canonical uuid, or None (also if it is not taken).

    As :meth:`~.batches.EventReader.uuid_of` finds it: the field ``uuid_id``,
    or else the one top-level ``str`` or ``uid`` field holding a UUID.
    """
    if uuid_id is not None:
        field = shape.fields.get(uuid_id)
        candidates = [(uuid_id, field.tag)] if field is not None and field.tag in (
            "str", "uid") else []
    else:
        candidates = [(fid, f.tag) for fid, f in sorted(shape.fields.items())
                      if f.tag in ("str", "uid")]
    lines = ["def check(raw):",
             "    try:",
             "        event = decode(raw)",
             "    except DecodeError:",
             "        return None",
             "    found = None"]
    for fid, tag in candidates:
        attribute = f"f{fid}".replace("-", "_")
        lines += [f"    value = event.{attribute}",
                  "    if value is not UNSET:",
                  f"        value = value.{tag}",
                  "        if 32 <= len(value) <= 45:",
                  "            value = canonical_uuid(value)",
                  "            if value is not None:",
                  "                if found is not None:",
                  "                    return None",
                  "                found = value"]
    lines.append("    return found")
    scope: Dict[str, Any] = {"decode": decode, "DecodeError": msgspec.DecodeError,
                             "UNSET": UNSET, "canonical_uuid": canonical_uuid}
    exec("\n".join(lines), scope)  # noqa: S102 - names are f<digits> and tags from a table
    return scope["check"]  # type: ignore[no-any-return]
