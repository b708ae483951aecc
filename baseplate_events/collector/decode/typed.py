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

A container seen only empty (``["lst", 0]`` for a list of lists) does not
say what its elements hold: until one is seen with elements it is typed as
an empty container of its tags. A recursive struct (``--schema`` with a tree)
is unrolled :data:`_RECURSION_DEPTH` levels deep; what nests deeper is left to
read_struct.

The compiled decoder takes only events :func:`~.documents.read_struct`
takes, with the same values: anything it refuses (an unknown field id, a
field id written ``"01"``, a wrong type, a bad count, a NaN...) is read
again by :func:`~.documents.read_struct`, which takes it or says why not.
Tests hold the two to each other and to Thrift's own reader.
"""
from __future__ import annotations

import binascii
import sys
import threading
from typing import Annotated, Any, Callable, Dict, List, Literal, NamedTuple, Tuple, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ...tjson.tags import CONTAINER_TAGS, SCALAR_TAGS
from .binary import BASE64_PADDING
from .documents import _DOUBLE_KEY, _INT_RANGES, _SPECIAL_DOUBLES, FieldShape, StructShape
from .typed_shapes import only_empty, recursive_structs
from .uuids import _UUID_SPELLING

__all__ = ["EVENT", "Compiled", "Untypable", "compile_shape"]

_DBL_MAX = sys.float_info.max
#: as a msgspec constraint (re.search, no flags of its own): anchored, ASCII only, as
#: _UUID_SPELLING is (without it, case folding takes "İ" and "ı" for "i")
_UUID_PATTERN = "(?a)^(?:" + _UUID_SPELLING.pattern + r")\Z"
_UUID = Annotated[str, Meta(pattern=_UUID_PATTERN)]
#: how deeply a compiled type nests (read_struct's own limit is MAX_DEPTH)
_MAX_DEPTH = 32
#: how many levels of a recursive struct the compiled type unrolls (half of _MAX_DEPTH:
#: the containers inside the deepest level nest further)
_RECURSION_DEPTH = _MAX_DEPTH // 2


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


def _too_deep(self: Any) -> None:
    """A recursive struct nested past what the compiled type unrolls: read_struct judges."""
    raise _Bad()


def _base64(var: str) -> str:
    """The source line decoding the binary ``var`` as Thrift's reader does (base64_problem)."""
    return f"_a2b({var} + _pad[len({var}) & 3])"


class _Compiler:
    """Compiles a :class:`StructShape` into msgspec Struct types and their checks.

    What msgspec cannot say of a container (``[type, count, v1, ...]``: the
    tag and count where they belong, the count right, every item an element)
    is written out as Python source, once per schema, into the
    ``__post_init__`` of the struct holding the container: one call per
    struct, not per container.
    """

    def __init__(self, recursive: "set[int]" = frozenset()) -> None:  # type: ignore[assignment]
        #: each struct shape's type, by id (a recursive one's by id and depth)
        self.structs: Dict[Any, Any] = {}
        #: the ids of the recursive struct shapes (see recursive_structs)
        self.recursive = recursive
        #: the element type of each list or set of structs, by (id of its field, depth)
        self.items: Dict[Tuple[int, int], Any] = {}
        self.too_deep: Any = None
        #: how many levels each struct's type nests below it, by the key of self.structs
        self.heights: Dict[Any, int] = {}
        #: the deepest level reached so far (a struct's height, as it is compiled)
        self.deepest = 0
        #: whether a map is keyed by integers (msgspec reads the keys "0" and "-0" as one)
        self.int_keys = False
        self.counter = 0
        self.scope: Dict[str, Any] = {"UNSET": UNSET, "_Bad": _Bad, "_doubles": _doubles,
                                      "_uuid": _UUID_SPELLING.fullmatch,
                                      "_a2b": binascii.a2b_base64, "_pad": BASE64_PADDING,
                                      "_double_key": _DOUBLE_KEY.fullmatch,
                                      "_zero_twice": _zero_twice}

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def struct(self, shape: StructShape, depth: int) -> Any:
        key: Any = id(shape)
        if key in self.recursive:  # unrolled: a type of its own at each depth
            if depth > _RECURSION_DEPTH:
                return self.deeper()
            key = (key, depth)
        known = self.structs.get(key)
        if known is not None:  # compiled already, maybe higher up: it must fit here too
            self.deepest = max(self.deepest, depth + self.heights[key])
            if self.deepest > _MAX_DEPTH:
                raise Untypable("nested too deeply")
            return known
        if depth > _MAX_DEPTH or key in self.structs:
            raise Untypable("nested too deeply")
        self.structs[key] = None  # meeting this again would be recursion
        outer, self.deepest = self.deepest, depth
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
            elif field.binary:  # base64, as Thrift's reader decodes it (base64_problem)
                lines += [f"    v = self.{attribute}",
                          "    if v is not UNSET:",
                          f"        v = v.{field.tag}",
                          f"        {_base64('v')}"]
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
        self.structs[key] = cls
        self.heights[key] = self.deepest - depth
        self.deepest = max(outer, self.deepest)
        return cls

    def deeper(self) -> Any:
        """The type past the unrolled levels: any object, then read_struct judges it."""
        if self.too_deep is None:
            self.too_deep = msgspec.defstruct(self.name("Deeper"), [], gc=False,
                                              namespace={"__post_init__": _too_deep})
        return self.too_deep

    def value(self, field: FieldShape, depth: int) -> Any:
        """The msgspec type of the JSON value of ``field`` (its tag's value)."""
        self.deepest = max(self.deepest, depth)
        tag = field.tag
        if tag == "rec":
            if field.struct is None:  # learned from empty lists only: no fields seen yet
                field.struct = StructShape("Unseen")
            return self.struct(field.struct, depth + 1)
        if only_empty(field):
            return self.empty(field)
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
            if etag == "rec":  # check() sees that every item is one
                self.items[id(field), depth] = inner
            return List[Union[_literal(etag), int, inner]]  # type: ignore[misc]
        if tag == "map":
            key, element = field.key, field.element
            if key is None or element is None or key.tag not in _KEY_TYPES:
                raise Untypable("map")
            if element.tag in _SCALARS:
                inner = _scalar(element.tag)
            else:
                inner = self.value(element, depth + 1)
            self.int_keys = self.int_keys or key.tag in _INT_RANGES
            pairs = Dict[_KEY_TYPES[key.tag], inner]  # type: ignore[valid-type,name-defined]
            # [key tag, value tag, count, {...}]: all but the count's match checked by msgspec
            return Tuple[_literal(key.tag), _literal(element.tag), int, pairs]  # type: ignore[misc]
        return _scalar(tag)

    def empty(self, field: FieldShape) -> Any:
        """The type of ``field`` as seen so far: only empty, its head's tags as seen."""
        element = field.element
        if element is None:
            raise Untypable(field.tag)
        if field.tag != "map":
            return Tuple[_literal(element.tag), Literal[0]]  # type: ignore[misc]
        key = field.key
        if key is None or key.tag not in _KEY_TYPES:
            raise Untypable("map")
        return Tuple[_literal(key.tag), _literal(element.tag),  # type: ignore[misc]
                     Literal[0], Annotated[Dict[str, Any], Meta(max_length=0)]]

    def check(self, field: FieldShape, var: str, indent: str, depth: int) -> List[str]:
        """Source lines checking the container ``var`` of ``field`` (msgspec typed its items)."""
        if depth > _MAX_DEPTH:
            raise Untypable("nesting")
        if only_empty(field):
            return []  # an empty container: msgspec checked all of it
        tag = field.tag
        if tag == "map":
            key, element = field.key, field.element
            assert key is not None and element is not None
            lines = [f"{indent}if {var}[2] != len({var}[3]):", f"{indent}    raise _Bad"]
            if key.tag in _INT_RANGES:  # "0" and "-0" are one key to msgspec
                lines += [f"{indent}if 0 in {var}[3] and _zero_twice():", f"{indent}    raise _Bad"]
            for part, binary in (("", key.binary), (".values()", element.binary)):
                if binary:
                    item = self.name("b")
                    lines += [f"{indent}for {item} in {var}[3]{part}:",
                              f"{indent}    {_base64(item)}"]
            if key.tag == "dbl":
                item = self.name("k")
                lines += [f"{indent}for {item} in {var}[3]:",
                          f"{indent}    if not _double_key({item}):",
                          f"{indent}        raise _Bad"]
            if element.tag in _CONTAINERS:
                item = self.name("v")
                inner = self.check(element, item, indent + "    ", depth + 1)
                if inner:  # none for values only seen empty: msgspec checked them
                    lines.append(f"{indent}for {item} in {var}[3].values():")
                    lines += inner
            return lines
        element = field.element
        assert element is not None
        etag = element.tag
        # [tag, count, ...]: msgspec typed each item as an element, the tag or an int.
        head = f"{var}[1] != len({var}) - 2 or {var}[0] != {etag!r}"
        if etag in _INT_RANGES:  # and the tag nowhere else (an item is the tag or an int)
            head += f" or {var}.count({etag!r}) != 1"
        lines = [f"{indent}if {head}:", f"{indent}    raise _Bad"]
        items = f"{var}[2:]"
        if etag == "tf":
            lines += [f"{indent}if not set({items}) <= {{0, 1}}:", f"{indent}    raise _Bad"]
        elif etag == "str":
            lines += [f"{indent}''.join({items})"]  # TypeError (refused) for an int
            if element.binary:
                item = self.name("b")
                lines += [f"{indent}for {item} in {items}:",
                          f"{indent}    {_base64(item)}"]
        elif etag == "uid":
            item = self.name("v")
            lines += [f"{indent}for {item} in {items}:",
                      f"{indent}    if not _uuid({item}):",
                      f"{indent}        raise _Bad"]
        elif etag == "dbl":
            lines += [f"{indent}_doubles({items})"]
        elif etag == "rec":
            kind = self.name("Item")
            check = self.name("is_struct")
            self.scope[kind] = self.items[id(field), depth]
            self.scope[check] = self.scope[kind].__instancecheck__
            # one item, the usual list of structs, without a map and a slice (half the time)
            lines += [f"{indent}if len({var}) == 3:",
                      f"{indent}    if type({var}[2]) is not {kind}:",
                      f"{indent}        raise _Bad",
                      f"{indent}elif not all(map({check}, {items})):",
                      f"{indent}    raise _Bad"]
        elif etag in _CONTAINERS:
            item = self.name("v")
            # a map is typed as a 4-tuple, a container only seen empty as a tuple
            kind = "tuple" if etag == "map" or only_empty(element) else "list"
            lines += [f"{indent}for {item} in {items}:",
                      f"{indent}    if type({item}) is not {kind}:",
                      f"{indent}        raise _Bad"]
            lines += self.check(element, item, indent + "    ", depth + 1)
        return lines


class Compiled(NamedTuple):
    """A shape's compiled decoder (:func:`compile_shape`)."""

    #: decodes one event's bytes, checking it against the shape as it parses
    decode: Callable[[bytes], Any]
    #: whether the caller must first put the event's bytes in ``EVENT.raw``, this
    #: thread's (a map keyed by integers: see :func:`_zero_twice`)
    needs_raw: bool


def compile_shape(shape: StructShape) -> Compiled:
    """A decoder of one event's bytes that checks it against ``shape`` as it parses.

    It raises ``msgspec.DecodeError`` (``ValidationError`` included), or
    another exception from a check, for anything :func:`~.documents.read_struct`
    would have to judge.

    :raises Untypable: the shape cannot be typed (maps keyed by containers or
        structs, nesting past 32).
    """
    compiler = _Compiler(recursive_structs(shape))
    return Compiled(msgspec.json.Decoder(compiler.struct(shape, 0)).decode, compiler.int_keys)


#: the event being decoded, in each thread (only for shapes with integer-keyed maps; the
#: caller of a :class:`Compiled` decoder with ``needs_raw`` sets ``EVENT.raw``)
EVENT = threading.local()


def _zero_twice() -> bool:
    """Whether the event may hold the integer map keys "0" and "-0" both.

    msgspec reads them as one key, so such a map would pass a count one short;
    read_struct sees two keys and refuses it. Asked only of a map holding the
    key 0; a map key "-0" elsewhere (a double -0.0) sends the event to
    read_struct too, which takes it.
    """
    return b'"-0":' in EVENT.raw
