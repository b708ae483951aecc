"""Auto-fill: ``source``, ``client_timestamp`` and ``uuid`` for a request's events.

One step of a put on the app side (:mod:`baseplate_events.runtime.request_events`):
after the registered fillers, before serialization, each of these fields that
the event's struct has and that is still ``None`` gets a value. Which fields a
generated struct has, and of which Thrift type, is read once per class from
its ``thrift_spec`` into a plan, so a put pays for a few ``getattr`` only.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

from thrift.Thrift import TType

__all__ = ["Autofill"]

_UUID = getattr(TType, "UUID", 16)

# (field name, factory of its value) for each auto-filled field a class has.
_Plan = Tuple[Tuple[str, Callable[[], Any]], ...]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _now_ms_float() -> float:
    return float(int(time.time() * 1000))


def _new_uuid() -> str:
    return str(uuid.uuid4())


class Autofill:
    """Fills the auto-filled fields of events; one per integration, its plans cached per class.

    :param source: the value of ``source``; ``None`` leaves that field alone.
    """

    def __init__(self, source: Optional[str]) -> None:
        self.source = source
        self._plans: Dict[type, _Plan] = {}

    def fill(self, event: Any) -> None:
        """Fill ``source``, ``client_timestamp`` and ``uuid`` where they exist and are None."""
        cls = type(event)
        plan = self._plans.get(cls)
        if plan is None:
            if getattr(cls, "thrift_spec", None) is None:
                # Not a generated struct: decide per instance, without caching.
                plan = self._plan_from_attributes(event)
            else:
                plan = self._plans[cls] = self._plan_from_spec(cls.thrift_spec)
        for name, make in plan:
            if getattr(event, name, None) is None:
                setattr(event, name, make())

    def _source_factory(self) -> Optional[Callable[[], Any]]:
        source = self.source
        if source is None:
            return None
        return lambda: source

    def _plan_from_spec(self, spec: Any) -> _Plan:
        types = {entry[2]: entry[1] for entry in spec if entry}
        factories: Dict[str, Optional[Callable[[], Any]]] = {
            "source": self._source_factory() if types.get("source") == TType.STRING else None,
            "client_timestamp": {TType.I64: _now_ms, TType.DOUBLE: _now_ms_float}.get(
                types.get("client_timestamp", -1)
            ),
            "uuid": _new_uuid if types.get("uuid") in (TType.STRING, _UUID) else None,
        }
        return tuple((name, make) for name, make in factories.items() if make is not None)

    def _plan_from_attributes(self, event: Any) -> _Plan:
        factories = {
            "source": self._source_factory(),
            "client_timestamp": _now_ms,
            "uuid": _new_uuid,
        }
        return tuple(
            (name, make)
            for name, make in factories.items()
            if make is not None and hasattr(event, name)
        )
