"""How ``baseplate-events-tail`` prints a stored event: one JSON object per line, or a table.

Each JSON line holds the event's ``uuid``, its ``stream`` (``v1``, ``v2``,
``v2j``), ``received_ms``, where it was read (``topic``, ``partition``,
``offset``; ``file``, ``line`` and ``pending``; or ``row`` and
``receipts``) and its ``fields``: a v1 event's object as it is, a v2 event's
fields by name with ``--schema``, by id without. The fields are read by the
collector's own reader (:attr:`StoredEvent.document
<baseplate_events.collector.sinks.StoredEvent.document>` and ``named``), so
they are what the collector saw. An event that cannot be read so (another
schema than the collector's, a damaged file) is printed with ``error`` and
its JSON as stored in ``event``, never skipped.

A double TJSON spells ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` is
printed so, as a string, since JSON has no such number.
"""
from __future__ import annotations

import json
import math
import time
from typing import IO, Any, Dict, List, Optional

import msgspec

from ..decode.documents import StructShape
from ..sinks import StoredEvent
from . import TailedEvent

__all__ = ["JSONWriter", "TableWriter", "describe", "encode"]

_encode = msgspec.json.encode
_SPELLED = {math.inf: "Infinity", -math.inf: "-Infinity"}


def describe(event: TailedEvent, schema: Optional[StructShape]) -> Dict[str, Any]:
    """The JSON object printed for ``event``: uuid, stream, time, position, fields."""
    record: Dict[str, Any] = {"uuid": event.uuid, "stream": event.stream,
                              "received_ms": event.received_ms}
    record.update(event.position.as_dict())
    stored = StoredEvent(event.uuid, event.stream[1:], event.raw, schema=schema)
    try:
        if stored.version == "1" or schema is not None:
            record["fields"] = stored.named
        else:
            record["fields"] = stored.document
    except (ValueError, RecursionError) as exc:  # TJSONError and JSONDecodeError are ValueErrors
        record["error"] = f"cannot read the event: {exc}"
        record["event"] = event.raw.decode("utf-8", "replace")
    return record


def encode(record: Any, raw: bytes) -> bytes:
    """``record`` (or any part of it) as one line of JSON, no newline; ``raw`` is the
    event's JSON as stored."""
    if b"NaN" in raw or b"Infinity" in raw:  # only then can the fields hold such a double
        record = _spell_doubles(record)
    try:
        return _encode(record)
    except (TypeError, ValueError, OverflowError):
        # map keys msgspec does not take (bool), a lone surrogate, an integer past 64 bits
        return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def _spell_doubles(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else _SPELLED[value]
    if isinstance(value, dict):
        return {key: _spell_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_spell_doubles(item) for item in value]
    return value


class JSONWriter:
    """Writes one JSON object per event, newline-terminated."""

    def __init__(self, out: IO[bytes], schema: Optional[StructShape]) -> None:
        self.out = out
        self.schema = schema

    def write(self, event: TailedEvent) -> None:
        self.out.write(encode(describe(event, self.schema), event.raw) + b"\n")

    def flush(self) -> None:
        self.out.flush()


#: the table's columns: heading, and the widest a cell may be (None: no limit)
_COLUMNS = (("RECEIVED (UTC)", None), ("STREAM", None), ("UUID", None), ("WHERE", 48),
            ("FIELDS", None))


class TableWriter:
    """An aligned, human-readable view, newest last.

    Rows wait until the reader is caught up; then they are sorted by received
    time, the columns sized to fit them, and printed. What comes later
    (``--follow``) is printed in the same columns as it arrives. A row's
    fields are its JSON, cut to ``width`` characters in all.
    """

    def __init__(self, out: IO[bytes], schema: Optional[StructShape], width: int = 200) -> None:
        self.out = out
        self.schema = schema
        self.width = width
        self._rows: List[tuple] = []
        self._widths: Optional[List[int]] = None

    def write(self, event: TailedEvent) -> None:
        record = describe(event, self.schema)
        fields = record.get("fields") if "error" not in record else {"error": record["error"]}
        cells = [_time(event.received_ms), event.stream, event.uuid,
                 _cut(event.position.label(), _COLUMNS[3][1]),
                 encode(fields, event.raw).decode("utf-8", "replace")]
        if self._widths is None:
            self._rows.append((event.received_ms, len(self._rows), cells))
        else:
            self._print(cells)

    def flush(self) -> None:
        if self._widths is None:
            rows = [cells for _, _, cells in sorted(self._rows)]
            self._widths = [max([len(h)] + [len(r[i]) for r in rows])
                            for i, (h, _) in enumerate(_COLUMNS[:-1])]
            self._rows = []
            self._print([heading for heading, _ in _COLUMNS])
            for cells in rows:
                self._print(cells)
        self.out.flush()

    def _print(self, cells: List[str]) -> None:
        assert self._widths is not None
        line = "  ".join(cell.ljust(width) for cell, width in zip(cells, self._widths))
        line += "  " + cells[-1]
        self.out.write(_cut(line, self.width).encode("utf-8") + b"\n")


def _time(received_ms: int) -> str:
    seconds, ms = divmod(received_ms, 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}"


def _cut(text: str, width: Optional[int]) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"
