"""A compiled encoder for Thrift's TJSONProtocol: the v2 event wire format.

``serialize_v2_event`` must produce exactly the bytes of Apache Thrift's
``TJSONProtocol``, which is pure Python and costs tens of microseconds per
event. Here each struct class's ``thrift_spec`` is compiled once, on first use,
into a Python function specialised for that class (no per-field dispatch, no
protocol object, one UTF-8 encode at the end), and cached per class.

Where Thrift would write invalid JSON, this writes valid JSON instead:
non-finite doubles become ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
(what Thrift's C++ and Java protocols write, and what its Python reader
accepts), and control characters are escaped as ``\\u00XX``.

The fast path assumes well-typed values and lets C functions reject most bad
ones. When anything goes wrong, a slow, exact walker (:func:`_diagnose`) finds
the offending field and raises :class:`EventSerializationError` naming it,
e.g. ``Event.user.logged_in: expected a bool, got int``.
"""
from __future__ import annotations

import math
import operator
import uuid as uuid_module
from base64 import b64encode
from json.encoder import encode_basestring as _quote  # the C version when available
from typing import Any, Callable, Dict, List, Optional

from thrift.Thrift import TType

from .errors import EventSerializationError

__all__ = ["encode", "encoder_for"]

_UUID = getattr(TType, "UUID", 16)
_INT_BITS = {TType.BYTE: 8, TType.I16: 16, TType.I32: 32, TType.I64: 64}
_TYPE_TAGS = {
    TType.BOOL: "tf",
    TType.BYTE: "i8",
    TType.I16: "i16",
    TType.I32: "i32",
    TType.I64: "i64",
    TType.DOUBLE: "dbl",
    TType.STRING: "str",
    TType.STRUCT: "rec",
    TType.MAP: "map",
    TType.SET: "set",
    TType.LIST: "lst",
    _UUID: "uid",
}
_INT_NAMES = {8: "i8", 16: "i16", 32: "i32", 64: "i64"}
_SEQUENCE_TYPES = (list, tuple, set, frozenset)

Encoder = Callable[[Any], str]


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid()
    value = float(value)
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    return format(value, ".17g")


def _double_key(value: Any) -> str:
    text = _double_text(value)
    return text if text[0] == '"' else '"' + text + '"'


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
    if isinstance(value, uuid_module.UUID):
        return '"' + str(value) + '"'
    if isinstance(value, str):
        return _quote(str(uuid_module.UUID(value)))
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


# -- compiling thrift_spec into Python source ---------------------------------


class _Compiler:
    """Turns struct classes into generated encoder functions sharing one namespace."""

    def __init__(self, cache: Dict[type, Encoder]) -> None:
        self.cache = cache
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
            "_Invalid": _Invalid,
            "_encode_with_thrift": _encode_with_thrift,
            "_list": list,
            "_tuple": tuple,
            "_dict": dict,
        }
        self.names: Dict[type, str] = {}
        self.pending: List[type] = []
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def struct_function(self, cls: type) -> str:
        """The name of ``cls``'s encoder in the namespace, queueing it for compilation."""
        name = self.names.get(cls)
        if name is None:
            name = self.fresh("_enc_")
            self.names[cls] = name
            self.namespace[name + "_cls"] = cls
            if cls in self.cache:
                self.namespace[name] = self.cache[cls]
            else:
                self.pending.append(cls)
        return name

    def value_expr(self, ttype: int, args: Any, var: str) -> str:
        """A Python expression giving the TJSON text of ``var`` in a value position."""
        if ttype == TType.STRING:
            if args == "BINARY":
                return f"_binary_text({var})"
            if args == "UTF8":
                return f"_quote({var})"
            return f"_untyped_string_text({var})"
        if ttype in _INT_BITS:
            bits = _INT_BITS[ttype]
            low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            return (
                f"(str({var}) if {var}.__class__ is int and {low} <= {var} <= {high} "
                f"else _int_text({var}, {bits}))"
            )
        if ttype == TType.BOOL:
            return f"('1' if {var} is True else '0' if {var} is False else _invalid())"
        if ttype == TType.DOUBLE:
            return (
                f"(format({var}, '.17g') if {var}.__class__ is float and {var} - {var} == 0.0 "
                f"else _double_text({var}))"
            )
        if ttype == _UUID:
            return f"_uuid_text({var})"
        if ttype == TType.STRUCT:
            cls = args[0]
            fn = self.struct_function(cls)
            return f"({fn}({var}) if {var}.__class__ is {fn}_cls else _invalid())"
        if ttype in (TType.LIST, TType.SET):
            etype, eargs = args[0], args[1]
            item = self.fresh("_x")
            inner = self.value_expr(etype, eargs, item)
            seq = self.fresh("_s")
            tag = _TYPE_TAGS[etype]
            # A walrus keeps this one expression, so containers nest freely.
            return (
                f"(f'[\"{tag}\",{{len({seq})}}' + ''.join([',' + {inner} for {item} in {seq}]) + ']'"
                f" if ({seq} := ({var} if {var}.__class__ is _list else _sequence({var})))"
                f" is not None else '')"
            )
        if ttype == TType.MAP:
            ktype, kargs, vtype, vargs = args[0], args[1], args[2], args[3]
            key, val, mapping = self.fresh("_k"), self.fresh("_v"), self.fresh("_m")
            key_expr = self.key_expr(ktype, kargs, key)
            val_expr = self.value_expr(vtype, vargs, val)
            ktag, vtag = _TYPE_TAGS[ktype], _TYPE_TAGS[vtype]
            return (
                f"(f'[\"{ktag}\",\"{vtag}\",{{len({mapping})}},{{{{'"
                f" + ','.join([{key_expr} + ':' + {val_expr} for {key}, {val} in {mapping}.items()])"
                f" + '}}]' if ({mapping} := ({var} if {var}.__class__ is _dict else _mapping({var})))"
                f" is not None else '')"
            )
        raise _Unsupported(ttype)

    def key_expr(self, ttype: int, args: Any, var: str) -> str:
        """Map keys: TJSON quotes numbers there; containers and structs cannot be keys."""
        if ttype == TType.STRING or ttype == _UUID:
            return self.value_expr(ttype, args, var)
        if ttype in _INT_BITS or ttype == TType.BOOL:
            return "'\"' + " + self.value_expr(ttype, args, var) + " + '\"'"
        if ttype == TType.DOUBLE:
            return f"_double_key({var})"
        return f"_invalid({var})"

    def compile_pending(self) -> None:
        while self.pending:
            cls = self.pending.pop()
            name = self.names[cls]
            self.namespace[name] = self.build(cls, name)

    def build(self, cls: type, name: str) -> Encoder:
        spec = getattr(cls, "thrift_spec", None)
        if not isinstance(spec, (tuple, list)):
            return _encode_with_thrift
        try:
            lines = [f"def {name}(o):", "    p = []", "    a = p.append"]
            fields = sorted(
                (f for f in spec if isinstance(f, (tuple, list)) and len(f) >= 4),
                key=lambda f: f[0],
            )
            for field in fields:
                field_id, ttype, attr, args = field[0], field[1], field[2], field[3]
                expr = self.value_expr(ttype, args, "v")
                tag = _TYPE_TAGS[ttype]
                lines.append(f"    v = o.{attr}")
                lines.append("    if v is not None:")
                lines.append(f"        a('\"{field_id}\":{{\"{tag}\":' + {expr} + '}}')")
            lines.append("    return '{' + ','.join(p) + '}'")
        except _Unsupported:
            return _encode_with_thrift
        exec(compile("\n".join(lines), f"<tjson encoder for {cls.__qualname__}>", "exec"), self.namespace)
        return self.namespace[name]  # type: ignore[no-any-return]


class _Unsupported(Exception):
    """A thrift_spec this compiler does not know; Thrift's own protocol handles it."""


def _encode_with_thrift(struct: Any) -> str:
    """Fallback for structs without a usable thrift_spec: Thrift's own protocol."""
    from thrift.protocol.TJSONProtocol import TJSONProtocol
    from thrift.transport.TTransport import TMemoryBuffer

    buffer = TMemoryBuffer()
    struct.write(TJSONProtocol(buffer))
    return buffer.getvalue().decode("utf-8")  # type: ignore[no-any-return]


_CACHE: Dict[type, Encoder] = {}


def encoder_for(cls: type) -> Encoder:
    """The compiled encoder for a Thrift struct class (compiled on first use, then cached)."""
    encoder = _CACHE.get(cls)
    if encoder is None:
        compiler = _Compiler(_CACHE)
        compiler.struct_function(cls)
        compiler.compile_pending()
        for compiled_cls, fn_name in compiler.names.items():
            _CACHE.setdefault(compiled_cls, compiler.namespace[fn_name])
        encoder = _CACHE[cls]
    return encoder


def encode(struct: Any) -> bytes:
    """Serialize a Thrift struct exactly as TJSONProtocol does (valid JSON always).

    :raises EventSerializationError: a field holds a value of the wrong type, an
        integer out of its range, or a string UTF-8 cannot encode; the message
        names the field (``Event.user.logged_in``) and the value's type.
    """
    try:
        encoder = _CACHE[struct.__class__]
    except KeyError:
        if getattr(struct.__class__, "thrift_spec", None) is None and not hasattr(struct, "write"):
            raise EventSerializationError(
                "event", f"expected a Thrift struct, got {type(struct).__name__}"
            ) from None
        encoder = encoder_for(struct.__class__)
    try:
        return encoder(struct).encode("utf-8")
    except Exception as exc:
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
                _fail(path, f"map keys of type {_TYPE_TAGS[ktype]} cannot be written as JSON")
            _check(key, ktype, kargs, f"{path} key {key!r}")
            _check(item, vtype, vargs, f"{path}[{key!r}]")


def describe_spec(cls: type) -> Optional[str]:
    """The generated source's cache state, for debugging: ``None`` if not compiled yet."""
    return "compiled" if cls in _CACHE else None
