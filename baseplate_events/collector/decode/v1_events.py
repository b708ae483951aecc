"""The checks of one v1 event: the JSON object baseplate.py's v1 publishers send.

The required keys and their types, a canonical uuid, and what no sink can
take (nesting past :data:`~baseplate_events.collector.decode.documents.MAX_DEPTH`,
a bare NaN or Infinity, a number too large for a double), named by where it is.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Tuple

from .documents import MAX_DEPTH, BareConstant, canonical_uuid

__all__ = ["Checked", "check_v1"]

_DBL_MAX = sys.float_info.max

# One check per version: (canonical uuid, document, None) or (uuid if known, None, reason).
Checked = Tuple[Optional[str], Any, Optional[str]]


def check_v1(item: Any, raw: Optional[str], reader: Any) -> Checked:
    """A v1 event's (canonical uuid, the event, None), or (uuid if known, None, reason).

    ``raw`` and ``reader`` are unused: the signature is the v2 check's.
    """
    if not isinstance(item, dict):
        return None, None, f"expected a JSON object, got a {type(item).__name__}"
    raw_uuid = item.get("uuid")
    shown = raw_uuid if isinstance(raw_uuid, str) else None
    for key in ("event_topic", "event_type"):
        if not isinstance(item.get(key), str) or not item[key]:
            return shown, None, f"{key}: missing or not a non-empty string"
    timestamp = item.get("event_ts")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp <= 0:
        return shown, None, "event_ts: missing or not a positive integer (ms)"
    if not isinstance(raw_uuid, str) or not raw_uuid:
        return None, None, "uuid: missing or not a string"
    canonical = canonical_uuid(raw_uuid)
    if canonical is None:
        return shown, None, f"uuid: {raw_uuid[:64]!r} is not a UUID"
    if not isinstance(item.get("payload"), dict):
        return canonical, None, "payload: missing or not a JSON object"
    problem = _v1_problem(item)
    if problem is not None:
        return canonical, None, problem
    return canonical, item, None


def _v1_problem(item: Dict[str, Any]) -> Optional[str]:
    """What no sink can take in a v1 event, as a reason naming where; None if nothing.

    Nesting past :data:`MAX_DEPTH` (as v2 events are capped: a sink writing the
    event again, ``json.dumps``, would reach the recursion limit); a bare NaN or
    Infinity; a number the parser read as infinite (``1e400``), which could not be
    written anew (:func:`~baseplate_events.collector.decode.envelope.written`) as
    JSON. Walked without paths, which
    :func:`_v1_where` builds only for an event that has a problem.
    """
    stack: List[Tuple[Any, int]] = [(item, 0)]
    while stack:
        container, depth = stack.pop()
        for value in (container.values() if type(container) is dict else container):
            kind = type(value)
            if kind is dict or kind is list:
                if depth + 1 >= MAX_DEPTH:
                    return _v1_where(item)
                stack.append((value, depth + 1))
            elif kind is BareConstant or (kind is float and not -_DBL_MAX <= value <= _DBL_MAX):
                return _v1_where(item)
    return None


def _v1_where(item: Dict[str, Any]) -> Optional[str]:
    """:func:`_v1_problem`'s reason, naming where in the event it is."""
    stack: List[Tuple[str, Any, int]] = [(key, value, 1) for key, value in item.items()]
    while stack:
        path, value, depth = stack.pop()
        kind = type(value)
        if kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                shown = path if len(path) <= 64 else path[:61] + "..."
                return (f"{shown}: nested more than {MAX_DEPTH} levels deep; an event "
                        f"may nest at most {MAX_DEPTH}")
            if kind is dict:
                stack.extend((f"{path}.{key}", inner, depth + 1) for key, inner in value.items())
            else:
                stack.extend((f"{path}[{index}]", inner, depth + 1)
                             for index, inner in enumerate(value))
        elif kind is BareConstant:
            return f"{path}: bare {value.text} is not JSON; send a number, a string or null"
        elif kind is float and not -_DBL_MAX <= value <= _DBL_MAX:
            return f"{path}: a number too large for a double (the largest is about 1.8e308)"
    return None
