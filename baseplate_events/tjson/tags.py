"""The TJSON type tags: the one table the encoder writes and the collector's reader reads.

TJSONProtocol wraps every value in an object keyed by its type's tag
(``{"i64":3}``); containers name their element types by tag
(``["str",2,"a","b"]``). The tags and the integer ranges they stand for are
part of the wire format.
"""
from __future__ import annotations

from typing import Dict, Tuple

from thrift.Thrift import TType

__all__ = [
    "CONTAINER_TAGS",
    "INT_BITS",
    "INT_RANGES",
    "INT_TAGS",
    "SCALAR_TAGS",
    "TAGS",
    "TYPE_TAGS",
    "UUID_TTYPE",
]

#: Thrift's type id of a UUID (``TType.UUID``; thrift releases before 0.20 lack the name).
UUID_TTYPE: int = getattr(TType, "UUID", 16)

#: The TJSON tag of each Thrift type.
TYPE_TAGS: Dict[int, str] = {
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
    UUID_TTYPE: "uid",
}

#: The tags of values that hold no other value.
SCALAR_TAGS: Tuple[str, ...] = ("tf", "i8", "i16", "i32", "i64", "dbl", "str", "uid")
#: The tags of containers: they name their element types by tag.
CONTAINER_TAGS: Tuple[str, ...] = ("lst", "set", "map")
#: Every tag, in the order an error message lists them.
TAGS: Tuple[str, ...] = SCALAR_TAGS + ("rec",) + CONTAINER_TAGS

#: The width in bits of each integer type.
INT_BITS: Dict[int, int] = {TType.BYTE: 8, TType.I16: 16, TType.I32: 32, TType.I64: 64}
#: The tag of each integer width.
INT_TAGS: Dict[int, str] = {bits: TYPE_TAGS[ttype] for ttype, bits in INT_BITS.items()}
#: The smallest and largest value of each integer tag.
INT_RANGES: Dict[str, Tuple[int, int]] = {
    TYPE_TAGS[ttype]: (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    for ttype, bits in INT_BITS.items()
}
