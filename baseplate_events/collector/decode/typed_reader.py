"""Each worker's typed reader: a compiled decoder for the schema, or for the shape it learned.

With ``--schema``, :class:`TypedReader` compiles the schema's decoder once
(:func:`~baseplate_events.collector.decode.typed.compile_shape`); without
one, it learns the shape of the events it reads and compiles a wider decoder
as fields appear, at most :data:`MAX_COMPILES` at once and then once per
:data:`RECOMPILE_INTERVAL`.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional

from msgspec import UNSET

from .documents import FieldShape, StructShape
from .typed import EVENT, Compiled, Untypable, compile_shape
from .uuids import _CANONICAL_UUID, canonical_uuid

__all__ = ["MAX_COMPILES", "RECOMPILE_INTERVAL", "TypedReader"]


#: how often a reader with no schema compiles a wider learned shape at once; then once
#: per RECOMPILE_INTERVAL seconds at most (a schema gains fields while workers run)
MAX_COMPILES = 32
RECOMPILE_INTERVAL = 60.0
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
        self._compiled_at = 0.0
        #: fields in the learned shape, nested ones included (bounded: ids come from the network)
        self.fields = 0
        self._lock = threading.Lock()
        self.check: Callable[[bytes], Optional[str]] = _never
        if schema is not None:
            self._compile()

    def _compile(self) -> None:
        try:
            compiled = compile_shape(self.shape)
        except Untypable:
            self.check = _never
            return
        self.compiles += 1
        self.check = _uuid_check(compiled, self.shape, self.uuid_id)

    def learn(self, parsed: Dict[str, Any]) -> None:
        """Widen the learned shape by an event read_struct took, and compile it again."""
        if not self.learning or not self._may_compile():
            return
        with self._lock:
            if not self._may_compile() or self.fields > MAX_LEARNED_FIELDS:
                return
            if learn_shape(parsed, self.shape):
                self.fields = _count_fields(self.shape)
                self._compile()
                self._compiled_at = time.monotonic()

    def _may_compile(self) -> bool:
        return (self.compiles < MAX_COMPILES
                or time.monotonic() - self._compiled_at >= RECOMPILE_INTERVAL)


def _never(raw: bytes) -> Optional[str]:
    return None


def _count_fields(shape: StructShape) -> int:
    """The fields of ``shape`` and of the structs in it, each struct counted once."""
    seen: Dict[int, None] = {}
    todo = [shape]
    count = 0
    while todo:
        struct = todo.pop()
        if id(struct) in seen:
            continue
        seen[id(struct)] = None
        count += len(struct.fields)
        for field in struct.fields.values():
            inner: Optional[FieldShape] = field
            while inner is not None:
                if inner.struct is not None:
                    todo.append(inner.struct)
                if inner.key is not None and inner.key.struct is not None:
                    todo.append(inner.key.struct)
                inner = inner.element
    return count


def _uuid_check(compiled: Compiled, shape: StructShape, uuid_id: Optional[int]
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
    lines = ["def check(raw):"]
    if compiled.needs_raw:  # set here, not in a wrapper: one Python call less per event
        lines.append("    EVENT.raw = raw")
    lines += ["    try:",
              "        event = decode(raw)",
              "    except Exception:  # DecodeError, or a check's IndexError: read_struct judges",
              "        return None"]
    if uuid_id is not None:  # the one field: canonical already (the usual case), or made so
        for fid, tag in candidates:
            lines += [f"    value = event.f{fid}".replace("-", "_"),
                      "    if value is UNSET:",
                      "        return None",
                      f"    value = value.{tag}",
                      "    if canonical(value) is not None:",
                      "        return value",
                      "    return canonical_uuid(value)"]
    lines.append("    found = None")
    for fid, tag in candidates if uuid_id is None else []:
        attribute = f"f{fid}".replace("-", "_")
        lines += [f"    value = event.{attribute}",
                  "    if value is not UNSET:",
                  f"        value = value.{tag}",
                  "        if 32 <= len(value) <= 45:",
                  # canonical already (the usual case) without a call, or made so
                  "            if canonical(value) is None:",
                  "                value = canonical_uuid(value)",
                  "            if value is not None:",
                  "                if found is not None:",
                  "                    return None",
                  "                found = value"]
    lines.append("    return found")
    scope: Dict[str, Any] = {"decode": compiled.decode, "EVENT": EVENT, "UNSET": UNSET,
                             "canonical_uuid": canonical_uuid,
                             "canonical": _CANONICAL_UUID.fullmatch}
    exec("\n".join(lines), scope)  # noqa: S102 - names are f<digits> and tags from a table
    return scope["check"]  # type: ignore[no-any-return]


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
