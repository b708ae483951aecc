"""A compiled encoder for Thrift's TJSONProtocol: the v2 event wire format.

``serialize_v2_event`` must produce exactly the bytes of Apache Thrift's
``TJSONProtocol``, which is pure Python and costs tens of microseconds per
event. Here each struct class's ``thrift_spec`` is compiled once, on first use,
into Python source specialised for that class, and cached per class. The
generated code has no per-field dispatch and no protocol object: it appends
ready-made pieces of text to one list shared by every nested struct (each
field's header is a constant; f-strings glue the value in), joins the list
once and encodes it to UTF-8 once.

Where Thrift would write invalid JSON, this writes valid JSON instead:
non-finite doubles become ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
(what Thrift's C++ and Java protocols write, and what its Python reader
accepts), and control characters are escaped as ``\\u00XX``. As map keys,
non-finite doubles are already quoted by Thrift (``"nan"``, ``"inf"``), which
is valid JSON, so there the bytes are Thrift's.

The fast path assumes well-typed values and lets cheap class checks and C
functions reject bad ones. When anything goes wrong, a slow, exact walker
(:func:`_diagnose`) finds the offending field and raises
:class:`EventSerializationError` naming it, e.g.
``Event.user.logged_in: expected a bool, got int``.
"""
from __future__ import annotations

import math
import operator
import threading
import uuid as uuid_module
from base64 import b64encode
from json.encoder import encode_basestring as _quote  # the C version when available
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple

from thrift.Thrift import TType

from ..errors import EventSerializationError
from .tags import INT_BITS, INT_TAGS, TYPE_TAGS, UUID_TTYPE

__all__ = ["encode", "encoder_for", "source_for"]

_UUID = UUID_TTYPE
_INT_BITS = INT_BITS
_INT_NAMES = INT_TAGS
_SEQUENCE_TYPES = (list, tuple, set, frozenset)

Encoder = Callable[[Any], bytes]


# -- helpers the generated code calls on its slow branches --------------------


class _Invalid(Exception):
    """Raised inside the fast path; the caller re-walks the event to explain it."""


def _int_text(value: Any, bits: int) -> str:
    """An integer field's JSON text, for values other than an in-range plain int."""
    return str(_as_int(value, bits))


def _as_int(value: Any, bits: int) -> int:
    if isinstance(value, bool):
        raise _Invalid()
    if isinstance(value, float):
        # The seed's own example fills an i64 with time.time() * 1000; an
        # integer field gets the float's integer part, as int() gives it.
        if not math.isfinite(value):
            raise _Invalid()
        value = int(value)
    else:
        try:
            value = operator.index(value)
        except TypeError:
            raise _Invalid() from None
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise _Invalid()
    return value


def _double_text(value: Any) -> str:
    """A double's JSON text, for values other than a finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid()
    value = float(value)
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    return "%.17g" % value


def _double_key(value: Any) -> str:
    """A double map key: Thrift quotes it, so even ``"nan"``/``"inf"`` are valid JSON."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid()
    value = float(value)
    if math.isnan(value):
        return '"nan"'
    if math.isinf(value):
        return '"inf"' if value > 0 else '"-inf"'
    return '"%.17g"' % value


def _binary_text(value: Any) -> str:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _Invalid()
    return '"' + b64encode(value).decode("ascii") + '"'


def _untyped_string_text(value: Any) -> str:
    """Strings from compilers that do not mark binary fields: go by the value."""
    if isinstance(value, str):
        return _quote(value)
    return _binary_text(value)


def _uuid_text(value: Any) -> str:
    # Thrift writes str(value) as given; a string must at least parse as a UUID.
    if isinstance(value, uuid_module.UUID):
        return '"' + str(value) + '"'
    if isinstance(value, str):
        uuid_module.UUID(value)
        return _quote(value)
    raise _Invalid()


def _invalid(*_: Any) -> str:
    raise _Invalid()


def _sequence(value: Any) -> Any:
    if isinstance(value, (str, bytes, bytearray, dict)) or not isinstance(value, _SEQUENCE_TYPES):
        raise _Invalid()
    return value


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _Invalid()
    return value


def _items(head: str, items: Any, joined: str) -> str:
    """``["tag",N,e1,e2]``: a list or set, given its header and its joined elements."""
    return f"{head}{len(items)},{joined}]" if items else head + "0]"


def _pairs(head: str, mapping: Any, joined: str) -> str:
    """``["ktag","vtag",N,{k:v,...}]``: a map, given its header and its joined pairs."""
    return f"{head}{len(mapping)},{{{joined}}}]"


# -- compiling thrift_spec into Python source ---------------------------------
#
# Every struct class C gets three generated functions:
#   _app_N(o, a, s)  appends C's text to the output through ``a`` (list.append);
#                    ``s`` is the text still to be written before C's first
#                    field, ending in "{".
#   _str_N(o)        C's text as a str, for structs inside containers that are
#                    built as expressions (maps of structs, lists of lists of ...).
#   _top_N(o)        the event's bytes: the entry point for C as an event.
# Nested structs (and lists of them) are inlined into their parent's body up
# to _MAX_INLINE levels (and never into themselves), so a whole event is
# usually one Python call appending to one list.
#
# Throughout a body, ``s`` holds text already decided but not yet appended:
# the opening of a struct until its first field is written, then "," or the
# closing brackets of what was just finished followed by ",". Each field's text
# is appended with ``s`` in front, so brackets cost no appends of their own;
# "does s end with a comma?" tells whether a struct being closed wrote a field.

_MAX_INLINE = 4
_CLOSE_NESTED = "s = s[:-1] + '}},' if s[-1] == ',' else s + '}},'"
_CLOSE_ELEMENT = "s = s[:-1] + '},' if s[-1] == ',' else s + '},'"
_CLOSE_OUTER = "a(s[:-1] + '}' if s[-1] == ',' else s + '}')"


def _literal(text: str) -> str:
    """``text`` as the literal part of a single-quoted f-string."""
    assert "'" not in text and "\\" not in text
    return text.replace("{", "{{").replace("}", "}}")


class _Unsupported(Exception):
    """A thrift_spec this compiler does not know; Thrift's own protocol handles it."""


class _Compiler:
    """Turns struct classes into generated functions sharing one namespace."""

    def __init__(self) -> None:
        self.namespace: Dict[str, Any] = {
            "_quote": _quote,
            "_int_text": _int_text,
            "_double_text": _double_text,
            "_double_key": _double_key,
            "_binary_text": _binary_text,
            "_untyped_string_text": _untyped_string_text,
            "_uuid_text": _uuid_text,
            "_invalid": _invalid,
            "_sequence": _sequence,
            "_mapping": _mapping,
            "_items": _items,
            "_pairs": _pairs,
            "_join": ",".join,
            "_G17": "%.17g",
            "_Invalid": _Invalid,
            "_list": list,
            "_set": set,
            "_dict": dict,
            "_int": int,
            "_float": float,
            "_map": map,
            "_len": len,
        }
        self.names: Dict[type, str] = {}
        self.sources: Dict[type, str] = {}
        self.fallback: Dict[type, bool] = {}
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # -- expressions: the TJSON text of a value held in a variable -------------

    def function_for(self, ttype: int, args: Any) -> Optional[str]:
        """A one-argument function giving a value's text, if one exists (for ``map``)."""
        if ttype == TType.STRING:
            return {"BINARY": "_binary_text", "UTF8": "_quote"}.get(args, "_untyped_string_text")
        if ttype == _UUID:
            return "_uuid_text"
        if ttype == TType.STRUCT:
            return "_str_" + self.struct_name(args[0])
        return None

    def value_expr(self, ttype: int, args: Any, var: str) -> str:
        """A Python expression giving the TJSON text of ``var`` in a value position."""
        function = self.function_for(ttype, args)
        if function is not None:
            return f"{function}({var})"
        if ttype in _INT_BITS:
            bits = _INT_BITS[ttype]
            low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            return (
                f"(f'{{{var}}}' if {var}.__class__ is _int and {low} <= {var} <= {high} "
                f"else _int_text({var}, {bits}))"
            )
        if ttype == TType.BOOL:
            return f"('1' if {var} is True else '0' if {var} is False else _invalid())"
        if ttype == TType.DOUBLE:
            return (
                f"(_G17 % {var} if {var}.__class__ is _float and {var} - {var} == 0.0 "
                f"else _double_text({var}))"
            )
        if ttype in (TType.LIST, TType.SET):
            seq = self.fresh("_s")
            kind = "_list" if ttype == TType.LIST else "_set"
            checked = f"({seq} := ({var} if {var}.__class__ is {kind} else _sequence({var})))"
            head = repr(f'["{TYPE_TAGS[args[0]]}",')
            return f"_items({head}, {checked}, {self.join_expr(args[0], args[1], seq)})"
        if ttype == TType.MAP:
            ktype, kargs, vtype, vargs = args[0], args[1], args[2], args[3]
            mapping = self.fresh("_m")
            checked = f"({mapping} := ({var} if {var}.__class__ is _dict else _mapping({var})))"
            head = repr(f'["{TYPE_TAGS[ktype]}","{TYPE_TAGS[vtype]}",')
            key, val = self.fresh("_k"), self.fresh("_v")
            key_text = self.key_expr(ktype, kargs, key)
            value_text = self.value_expr(vtype, vargs, val)
            if "'" in key_text + value_text:
                pair = f"{key_text} + ':' + {value_text}"
            else:  # an f-string is the cheapest way to glue the pair
                pair = f"f'{{{key_text}}}:{{{value_text}}}'"
            joined = f"_join([{pair} for {key}, {val} in {mapping}.items()])"
            return f"_pairs({head}, {checked}, {joined})"
        raise _Unsupported(ttype)

    def join_expr(self, ttype: int, args: Any, seq: str) -> str:
        """The elements of ``seq`` as text, comma-separated."""
        function = self.function_for(ttype, args)
        if function is not None:
            return f"_join(_map({function}, {seq}))"
        item = self.fresh("_x")
        return f"_join([{self.value_expr(ttype, args, item)} for {item} in {seq}])"

    def key_expr(self, ttype: int, args: Any, var: str) -> str:
        """Map keys: TJSON quotes numbers there; containers and structs cannot be keys."""
        if ttype == TType.STRING or ttype == _UUID:
            return self.value_expr(ttype, args, var)
        if ttype in _INT_BITS or ttype == TType.BOOL:
            return "'\"' + " + self.value_expr(ttype, args, var) + " + '\"'"
        if ttype == TType.DOUBLE:
            return f"_double_key({var})"
        return f"_invalid({var})"

    # -- statements: a struct's fields appended to the output -----------------

    def struct_lines(self, cls: type, obj: str, indent: int, stack: Tuple[type, ...]) -> List[str]:
        """The body writing every field of ``cls`` held in variable ``obj``."""
        spec = getattr(cls, "thrift_spec", None)
        if not isinstance(spec, (tuple, list)):
            raise _Unsupported(spec)
        fields = sorted(
            (f for f in spec if isinstance(f, (tuple, list)) and len(f) >= 4),
            key=lambda f: f[0],
        )
        lines: List[str] = []
        for field in fields:
            field_id, ttype, attr, args = field[:4]
            lines.extend(self.field_lines(obj, field_id, ttype, attr, args, indent, stack + (cls,)))
        return lines

    def field_lines(
        self,
        obj: str,
        field_id: int,
        ttype: int,
        attr: str,
        args: Any,
        indent: int,
        stack: Tuple[type, ...],
    ) -> List[str]:
        pad, inner = " " * indent, " " * (indent + 4)
        head = _literal(f'"{field_id}":{{"{TYPE_TAGS[ttype]}":')
        out = [f"{pad}v = {obj}.{attr}", f"{pad}if v is not None:"]
        add = [inner + line for line in self.value_lines(ttype, args, head, field_id)]
        if ttype == TType.STRUCT:
            cls = args[0]
            name = self.struct_name(cls)
            add = [f"{inner}if v.__class__ is not _cls_{name}:", f"{inner}    _invalid()"]
            if cls in stack or len(stack) >= _MAX_INLINE:
                add += [f"{inner}_app_{name}(v, a, f'{{s}}{head}{{{{')", f"{inner}s = '}},'"]
            else:
                var = f"o{len(stack)}"
                add += [f"{inner}s = f'{{s}}{head}{{{{'", f"{inner}{var} = v"]
                add += self.struct_lines(cls, var, indent + 4, stack)
                add += [inner + _CLOSE_NESTED]
        elif ttype in (TType.LIST, TType.SET) and args[0] == TType.STRUCT:
            cls = args[1][0]
            name = self.struct_name(cls)
            var = f"x{len(stack)}"
            add = [
                f"{inner}if v.__class__ is not _list:",
                f"{inner}    v = _sequence(v)",
                f"{inner}a(f'{{s}}{head}[\"rec\",{{_len(v)}}')",
                f"{inner}s = ','",
                f"{inner}for {var} in v:",
                f"{inner}    if {var}.__class__ is not _cls_{name}:",
                f"{inner}        _invalid()",
            ]
            if cls in stack or len(stack) >= _MAX_INLINE:
                add += [f"{inner}    _app_{name}({var}, a, s + '{{')", f"{inner}    s = ','"]
            else:
                add += [f"{inner}    s += '{{'"]
                add += self.struct_lines(cls, var, indent + 8, stack)
                add += [f"{inner}    {_CLOSE_ELEMENT}"]
            add += [f"{inner}s = s[:-1] + ']}},'"]
        return out + add

    def value_lines(self, ttype: int, args: Any, head: str, field_id: int) -> List[str]:
        """Lines appending a non-struct field whose value is in ``v``."""
        if ttype == TType.STRING and args == "UTF8":
            return [f"a(f'{{s}}{head}{{_quote(v)}}}}}}')", "s = ','"]
        if ttype in _INT_BITS:
            bits = _INT_BITS[ttype]
            low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            return [
                f"if v.__class__ is not _int or not {low} <= v <= {high}:",
                f"    v = _int_text(v, {bits})",
                f"a(f'{{s}}{head}{{v}}}}}}')",
                "s = ','",
            ]
        if ttype == TType.BOOL:
            true = repr(f'"{field_id}":{{"tf":1}}')
            false = repr(f'"{field_id}":{{"tf":0}}')
            choice = f"{true} if v is True else {false} if v is False else _invalid()"
            return [f"a(s + ({choice}))", "s = ','"]
        if ttype == TType.STRUCT or (ttype in (TType.LIST, TType.SET) and args[0] == TType.STRUCT):
            return []  # field_lines writes these itself
        return [
            f"t = {self.value_expr(ttype, args, 'v')}",
            f"a(f'{{s}}{head}{{t}}}}}}')",
            "s = ','",
        ]

    def struct_name(self, cls: type) -> str:
        """The suffix of ``cls``'s generated functions, compiling them if need be."""
        name = self.names.get(cls)
        if name is None:
            name = self.fresh("")
            self.names[cls] = name
            self.namespace["_cls_" + name] = cls
            self.build(cls, name)
        return name

    def build(self, cls: type, name: str) -> None:
        try:
            app_body = self.struct_lines(cls, "o", 4, ())
            top_body = self.struct_lines(cls, "o", 4, ())
        except _Unsupported:
            self.namespace["_thrift_text"] = _encode_with_thrift
            source = "\n".join(
                [
                    f"def _app_{name}(o, a, s):",
                    "    a(s[:-1] + _thrift_text(o))",
                    f"def _str_{name}(o):",
                    "    return _thrift_text(o)",
                    f"def _top_{name}(o):",
                    "    return _thrift_text(o).encode('utf-8')",
                    "",
                ]
            )
        else:
            source = "\n".join(
                [f"def _app_{name}(o, a, s):", *app_body, "    " + _CLOSE_OUTER]
                + [
                    f"def _str_{name}(o):",
                    f"    if o.__class__ is not _cls_{name}:",
                    "        raise _Invalid()",
                    "    p = []",
                    f"    _app_{name}(o, p.append, '{{')",
                    "    return ''.join(p)",
                ]
                + [f"def _top_{name}(o):", "    p = []", "    a = p.append", "    s = '{'"]
                + top_body
                + ["    " + _CLOSE_OUTER, "    return ''.join(p).encode('utf-8')", ""]
            )
        self.sources[cls] = source
        exec(compile(source, f"<tjson encoder for {cls.__qualname__}>", "exec"), self.namespace)


def _encode_with_thrift(struct: Any) -> str:
    """Fallback for structs without a usable thrift_spec: Thrift's own protocol."""
    from thrift.protocol.TJSONProtocol import TJSONProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    buffer = TMemoryBuffer()
    struct.write(TJSONProtocol(buffer))
    return buffer.getvalue().decode("utf-8")  # type: ignore[no-any-return]


_COMPILER = _Compiler()
_LOCK = threading.Lock()
_CACHE: Dict[type, Encoder] = {}


def encoder_for(cls: type) -> Encoder:
    """The compiled encoder for a Thrift struct class (compiled on first use, then cached).

    The encoder takes an instance and returns its TJSON bytes; it raises
    arbitrary exceptions on bad values (:func:`encode` explains them).
    """
    encoder = _CACHE.get(cls)
    if encoder is None:
        with _LOCK:
            name = _COMPILER.struct_name(cls)
            encoder = _COMPILER.namespace["_top_" + name]
            _CACHE[cls] = encoder
    return encoder


def source_for(cls: type) -> Tuple[str, ...]:
    """The generated source of ``cls``'s encoder and the structs it holds, for debugging."""
    encoder_for(cls)
    return tuple(_COMPILER.sources.values())


def encode(struct: Any) -> bytes:
    """Serialize a Thrift struct exactly as TJSONProtocol does (valid JSON always).

    :raises EventSerializationError: a field holds a value of the wrong type, an
        integer out of its range, or a string UTF-8 cannot encode; the message
        names the field (``Event.user.logged_in``) and the value's type.
    """
    encoder = _CACHE.get(struct.__class__)
    if encoder is None:
        cls = struct.__class__
        if getattr(cls, "thrift_spec", None) is None and not hasattr(struct, "write"):
            raise EventSerializationError("event", f"expected a Thrift struct, got {cls.__name__}")
        encoder = encoder_for(cls)
    try:
        return encoder(struct)
    except Exception as exc:
        _explain(struct, exc)


def _explain(struct: Any, exc: Exception) -> NoReturn:
    """Raise the error naming the bad field, found by the slow walker."""
    _diagnose(struct, type(struct).__name__)
    raise EventSerializationError(
        type(struct).__name__, f"could not be serialized: {exc!r}"
    ) from exc


# -- the slow, exact walker that explains a failure ---------------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _fail(path: str, problem: str) -> None:
    raise EventSerializationError(path, problem)


def _diagnose(struct: Any, path: str) -> None:
    """Walk ``struct`` as the encoder does and raise for the first bad value."""
    spec = getattr(type(struct), "thrift_spec", None)
    if not isinstance(spec, (tuple, list)):
        return
    for field in spec:
        if not isinstance(field, (tuple, list)) or len(field) < 4:
            continue
        _, ttype, attr, args = field[0], field[1], field[2], field[3]
        value = getattr(struct, attr, None)
        if value is not None:
            _check(value, ttype, args, f"{path}.{attr}")


def _check(value: Any, ttype: int, args: Any, path: str, is_key: bool = False) -> None:
    if value is None:
        _fail(path, "is None inside a container; Thrift cannot encode it")
    if ttype == TType.STRING:
        if args == "BINARY" or (args != "UTF8" and not isinstance(value, str)):
            if not isinstance(value, (bytes, bytearray, memoryview)):
                _fail(path, f"expected bytes (binary), got {_type_name(value)}")
            return
        if not isinstance(value, str):
            _fail(path, f"expected a string, got {_type_name(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start : exc.end]
            _fail(path, f"string holds {bad!r}, which UTF-8 cannot encode (a lone surrogate)")
    elif ttype in _INT_BITS:
        bits = _INT_BITS[ttype]
        if isinstance(value, bool) or not (
            isinstance(value, float) or hasattr(type(value), "__index__")
        ):
            _fail(path, f"expected an integer ({_INT_NAMES[bits]}), got {_type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            _fail(path, f"expected an integer ({_INT_NAMES[bits]}), got float {value!r}")
        number = int(value) if isinstance(value, float) else operator.index(value)
        limit = 1 << (bits - 1)
        if not -limit <= number < limit:
            _fail(
                path,
                f"{number} is out of range for {_INT_NAMES[bits]} ({-limit}..{limit - 1})",
            )
    elif ttype == TType.BOOL:
        if not isinstance(value, bool):
            _fail(path, f"expected a bool, got {_type_name(value)}")
    elif ttype == TType.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(path, f"expected a number (double), got {_type_name(value)}")
        try:
            float(value)
        except OverflowError:
            _fail(path, "integer too large to convert to a double")
    elif ttype == _UUID:
        if isinstance(value, str):
            try:
                uuid_module.UUID(value)
            except ValueError:
                _fail(path, f"expected a UUID, got the string {value!r}")
        elif not isinstance(value, uuid_module.UUID):
            _fail(path, f"expected a UUID, got {_type_name(value)}")
    elif ttype == TType.STRUCT:
        cls = args[0]
        if type(value) is not cls:
            _fail(path, f"expected struct {cls.__name__}, got {_type_name(value)}")
        _diagnose(value, path)
    elif ttype in (TType.LIST, TType.SET):
        if isinstance(value, (str, bytes, bytearray, dict)) or not isinstance(
            value, _SEQUENCE_TYPES
        ):
            kind = "list" if ttype == TType.LIST else "set"
            _fail(path, f"expected a {kind}, got {_type_name(value)}")
        for index, item in enumerate(value):
            _check(item, args[0], args[1], f"{path}[{index}]")
    elif ttype == TType.MAP:
        if not isinstance(value, dict):
            _fail(path, f"expected a dict (map), got {_type_name(value)}")
        ktype, kargs, vtype, vargs = args[0], args[1], args[2], args[3]
        for key, item in value.items():
            if ktype in (TType.STRUCT, TType.MAP, TType.LIST, TType.SET):
                _fail(path, f"map keys of type {TYPE_TAGS[ktype]} cannot be written as JSON")
            _check(key, ktype, kargs, f"{path} key {key!r}")
            _check(item, vtype, vargs, f"{path}[{key!r}]")

