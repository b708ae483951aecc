"""A batch's envelope: the array (v1, v2j) or struct (v2) around the events.

Read by :mod:`.batches` when a body is parsed whole (an unusual but valid
one, or one that is not a batch at all, which :class:`MalformedBatch` says).
"""
from __future__ import annotations

import json
from typing import Any, List

__all__ = ["MalformedBatch", "array_events", "v2_events", "written"]


class MalformedBatch(ValueError):
    """The body is not a batch of its version at all (HTTP 400)."""


def written(item: Any) -> bytes:
    """An event's JSON written anew, compactly, in UTF-8 (for a body parsed whole).

    A lone surrogate (``"\\ud800"``, which JSON can escape but UTF-8 cannot
    hold) is kept as its escape, as the fast split keeps it as received.
    """
    text = json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(item, separators=(",", ":"), allow_nan=False).encode("ascii")


def array_events(document: Any, version: str) -> List[Any]:
    what = "v1 events" if version == "1" else "TJSON events"
    if not isinstance(document, list):
        raise MalformedBatch(f"expected a JSON array of {what}, got a {type(document).__name__}")
    if not document:
        raise MalformedBatch("empty batch")
    return document


def v2_events(document: Any) -> List[Any]:
    """Check the ``{"1":{"lst":["rec",N,...]}}`` envelope and return the events in it."""
    shape = 'expected {"1":{"lst":["rec",N,event,...]}}'
    if not isinstance(document, dict) or set(document) != {"1"}:
        raise MalformedBatch(f"{shape}: the top level must be an object with only field 1")
    outer = document["1"]
    if not isinstance(outer, dict) or set(outer) != {"lst"} or not isinstance(outer["lst"], list):
        raise MalformedBatch(f'{shape}: field 1 must be {{"lst":[...]}}')
    header = outer["lst"]
    if len(header) < 2 or header[0] != "rec":
        raise MalformedBatch(f'{shape}: the list must hold structs ("rec")')
    count, elements = header[1], header[2:]
    if isinstance(count, bool) or not isinstance(count, int) or count != len(elements):
        raise MalformedBatch(f"{shape}: the list says {count!r} events but holds {len(elements)}")
    if not elements:
        raise MalformedBatch("empty batch")
    return elements
