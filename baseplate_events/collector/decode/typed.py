"""A struct's shape compiled into msgspec types: TJSON events checked in C.

:func:`~.documents.read_struct` walks an event's parsed JSON in Python,
one value at a time, and gives the exact reason for anything wrong. For a
sink that keeps only the event's bytes and uuid, the collector instead
decodes the event with a msgspec decoder compiled from the struct's shape
(:class:`~.documents.StructShape`, from ``--schema`` or learned from the
events themselves): the fields become a ``msgspec.Struct`` keyed by field id,
each ``{"TAG": value}`` a one-field Struct that forbids any other key, the
integer ranges, ``tf``'s 1 and 0 and the UUID spellings msgspec constraints;
a map (``[key type, value type, count, {...}]``) a 4-tuple of those types; a
list's or set's head (``[type, count, ...]``) and every count are checked by a
small Python hook, and the values inside are typed again. So the whole event
is checked while it is parsed.

The compiled decoder takes only events :func:`~.documents.read_struct`
takes, with the same values: anything it refuses (an unknown field id, a
field id written ``"01"``, a wrong type, a bad count, a NaN...) is read
again by :func:`~.documents.read_struct`, which takes it or says why not.
Tests hold the two to each other and to Thrift's own reader.
"""
from __future__ import annotations

import sys
from typing import Annotated, Any, Callable, Dict, List, Literal, Tuple, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ...tjson.tags import CONTAINER_TAGS, SCALAR_TAGS
from .documents import _DOUBLE_KEY, _INT_RANGES, _SPECIAL_DOUBLES, FieldShape, StructShape
from .uuids import _UUID_SPELLING

__all__ = ["Untypable", "compile_shape", "learn_shape"]

_DBL_MAX = sys.float_info.max
#: as a msgspec constraint (re.search, no flags of its own): anchored, ASCII only, as
#: _UUID_SPELLING is (without it, case folding takes "İ" and "ı" for "i")
_UUID_PATTERN = "(?a)^(?:" + _UUID_SPELLING.pattern + r")\Z"
_UUID = Annotated[str, Meta(pattern=_UUID_PATTERN)]
#: how deeply a compiled type nests (read_struct's own limit is MAX_DEPTH)
_MAX_DEPTH = 32


class Untypable(Exception):
    """A shape with no msgspec type (a map keyed by structs...): read_struct serves it."""


class _Bad(ValueError):
    """A container head or element that read_struct would judge: decode it again there."""


def _literal(*values: str) -> Any:
    """``Literal[values]``, of values known only at run time."""
    return Literal[values]  # type: ignore[valid-type]


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


_SCALARS = SCALAR_TAGS
_CONTAINERS = CONTAINER_TAGS
#: the JSON key of a map entry, by key type; "dbl" and "tf" keys are checked by the map's check
_KEY_TYPES: Dict[str, Any] = {
    "str": str,
    "uid": _UUID,
    "dbl": str,
    "tf": Literal["0", "1"],
    **{tag: Annotated[int, Meta(ge=low, le=high)] for tag, (low, high) in _INT_RANGES.items()},
}


def _doubles(items: List[Any]) -> None:
    """The items of a dbl list: numbers a double holds, or "NaN", "Infinity", "-Infinity"."""
    for item in items:
        kind = type(item)
        if kind is str:
            if item not in _SPECIAL_DOUBLES:
                raise _Bad()
        elif kind is int:
            if not -_DBL_MAX <= item <= _DBL_MAX:
                raise _Bad()
        elif kind is not float:
            raise _Bad()


class _Compiler:
    """Compiles a :class:`StructShape` into msgspec Struct types and their checks.

    What msgspec cannot say of a container (``[type, count, v1, ...]``: the
    tag and count where they belong, the count right, every item an element)
    is written out as Python source, once per schema, into the
    ``__post_init__`` of the struct holding the container: one call per
    struct, not per container.
    """

    def __init__(self) -> None:
        self.structs: Dict[int, Any] = {}
        self.counter = 0
        self.scope: Dict[str, Any] = {"UNSET": UNSET, "_Bad": _Bad, "_doubles": _doubles,
                                      "_uuid": _UUID_SPELLING.fullmatch,
                                      "_double_key": _DOUBLE_KEY.fullmatch}

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def struct(self, shape: StructShape, depth: int) -> Any:
        known = self.structs.get(id(shape))
        if known is not None:
            return known
        if depth > _MAX_DEPTH or id(shape) in self.structs:
            raise Untypable("recursive or nested too deeply")
        self.structs[id(shape)] = None  # a recursive shape meets this: read_struct reads it
        fields: List[Any] = []
        lines: List[str] = []
        for fid, field in sorted(shape.fields.items()):
            attribute = f"f{fid}".replace("-", "_")
            value_type = self.value(field, depth)
            wrapper = msgspec.defstruct(self.name("T"), [(field.tag, value_type)],
                                        forbid_unknown_fields=True, gc=False)
            if fid in shape.required:
                fields.append((attribute, wrapper))
            else:
                fields.append((attribute, Union[wrapper, UnsetType], UNSET))
            if field.tag in _CONTAINERS:
                lines += [f"    v = self.{attribute}",
                          "    if v is not UNSET:",
                          f"        v = v.{field.tag}"]
                lines += self.check(field, "v", "        ", depth)
        namespace: Dict[str, Any] = {}
        if lines:
            scope = dict(self.scope)
            exec("\n".join(["def __post_init__(self):", *lines]), scope)  # noqa: S102
            namespace["__post_init__"] = scope["__post_init__"]
        cls = msgspec.defstruct(self.name(shape.name), fields,
                                rename={f"f{fid}".replace("-", "_"): str(fid)
                                        for fid in shape.fields},
                                forbid_unknown_fields=True, gc=False, namespace=namespace,
                                kw_only=True)  # a required field may follow optional ones
        self.structs[id(shape)] = cls
        return cls

    def value(self, field: FieldShape, depth: int) -> Any:
        """The msgspec type of the JSON value of ``field`` (its tag's value)."""
        tag = field.tag
        if tag == "rec":
            if field.struct is None:  # learned from empty lists only: no fields seen yet
                field.struct = StructShape("Unseen")
            return self.struct(field.struct, depth + 1)
        if tag in ("lst", "set"):
            element = field.element
            if element is None:
                raise Untypable(tag)
            etag = element.tag
            if etag in _INT_RANGES:  # the count is in the range too, or read_struct judges
                return List[Union[_literal(etag), _scalar(etag)]]  # type: ignore[misc]
            if etag == "tf":
                return List[Union[Literal["tf"], int]]
            if etag in ("str", "uid"):
                return List[Union[str, int]]
            if etag == "dbl":
                return List[Union[str, int, float]]
            inner = self.value(element, depth + 1)
            return List[Union[_literal(etag), int, inner]]  # type: ignore[misc]
        if tag == "map":
            key, element = field.key, field.element
            if key is None or element is None or key.tag not in _KEY_TYPES:
                raise Untypable("map")
            if element.tag in _SCALARS:
                inner = _scalar(element.tag)
            else:
                inner = self.value(element, depth + 1)
            pairs = Dict[_KEY_TYPES[key.tag], inner]  # type: ignore[valid-type,name-defined]
            # [key tag, value tag, count, {...}]: all but the count's match checked by msgspec
            return Tuple[_literal(key.tag), _literal(element.tag), int, pairs]  # type: ignore[misc]
        return _scalar(tag)

    def check(self, field: FieldShape, var: str, indent: str, depth: int) -> List[str]:
        """Source lines checking the container ``var`` of ``field`` (msgspec typed its items)."""
        if depth > _MAX_DEPTH:
            raise Untypable("nesting")
        tag = field.tag
        if tag == "map":
            key, element = field.key, field.element
            assert key is not None and element is not None
            lines = [f"{indent}if {var}[2] != len({var}[3]):", f"{indent}    raise _Bad"]
            if key.tag == "dbl":
                item = self.name("k")
                lines += [f"{indent}for {item} in {var}[3]:",
                          f"{indent}    if not _double_key({item}):",
                          f"{indent}        raise _Bad"]
            if element.tag in _CONTAINERS:
                item = self.name("v")
                lines.append(f"{indent}for {item} in {var}[3].values():")
                lines += self.check(element, item, indent + "    ", depth + 1)
            return lines
        element = field.element
        assert element is not None
        etag = element.tag
        # [tag, count, ...]: msgspec typed each item as an element, the tag or an int.
        lines = [f"{indent}if {var}[1] != len({var}) - 2 or {var}[0] != {etag!r}:",
                 f"{indent}    raise _Bad"]
        items = f"{var}[2:]"
        if etag in _INT_RANGES:
            lines += [f"{indent}if {var}.count({etag!r}) != 1:", f"{indent}    raise _Bad"]
        elif etag == "tf":
            lines += [f"{indent}if not set({items}) <= {{0, 1}}:", f"{indent}    raise _Bad"]
        elif etag == "str":
            lines += [f"{indent}''.join({items})"]  # TypeError (refused) for an int
        elif etag == "uid":
            item = self.name("v")
            lines += [f"{indent}for {item} in {items}:",
                      f"{indent}    if not _uuid({item}):",
                      f"{indent}        raise _Bad"]
        elif etag == "dbl":
            lines += [f"{indent}_doubles({items})"]
        elif etag == "rec":
            assert element.struct is not None
            check = self.name("is_struct")
            self.scope[check] = self.structs[id(element.struct)].__instancecheck__
            lines += [f"{indent}if not all(map({check}, {items})):", f"{indent}    raise _Bad"]
        else:
            item = self.name("v")
            kind = "tuple" if etag == "map" else "list"  # a map is typed as a 4-tuple
            lines += [f"{indent}for {item} in {items}:",
                      f"{indent}    if type({item}) is not {kind}:",
                      f"{indent}        raise _Bad"]
            lines += self.check(element, item, indent + "    ", depth + 1)
        return lines


def compile_shape(shape: StructShape) -> Callable[[bytes], Any]:
    """A decoder of one event's bytes that checks it against ``shape`` as it parses.

    It raises ``msgspec.DecodeError`` (``ValidationError`` included), or
    another exception from a check, for anything :func:`~.documents.read_struct`
    would have to judge.

    :raises Untypable: the shape cannot be typed (recursive structs, maps
        keyed by containers, nesting past 32).
    """
    return msgspec.json.Decoder(_Compiler().struct(shape, 0)).decode


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
