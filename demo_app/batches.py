"""Decode and check the batches the publisher POSTs, one format per version.

This is the reference collector's reading of the wire formats in DESIGN.md:

- ``/v1``: ``[e1, e2, ...]``, each a legacy object with ``event_topic``,
  ``event_type``, ``event_ts``, ``uuid`` and ``payload``;
- ``/v2``: ``{"1":{"lst":["rec",N,e1,...]}}``, an ``EventBatch`` struct read
  with Thrift's own ``TJSONProtocol``;
- ``/v2j``: ``[e1, e2, ...]``, each event a TJSON struct.

A body that is not the batch shape of its version raises :class:`MalformedBatch`
(the collector answers 400). A well-formed batch holding events the collector
will not take raises :class:`RefusedEvents` naming each one (422); nothing of
such a batch is stored, so that a publisher can bisect it.
"""
from __future__ import annotations

import json
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from thrift.protocol.TJSONProtocol import TJSONProtocol
from thrift.transport.TTransport import TMemoryBuffer

from .event_schemas.event.ttypes import Event as ThriftEvent
from .event_schemas.event.ttypes import EventBatch

VERSIONS = ("1", "2", "2j")


@dataclass(frozen=True)
class StoredEvent:
    """One accepted event, reduced to what the collector indexes, plus its JSON."""

    uuid: str
    source: str
    action: str
    noun: str
    #: when the event was made, in ms since the epoch (v2 ``client_timestamp``, v1 ``event_ts``)
    timestamp_ms: int
    version: str
    document: str


@dataclass(frozen=True)
class Refusal:
    """Why the event at ``index`` of a batch was refused."""

    index: int
    reason: str
    uuid: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "reason": self.reason}


class MalformedBatch(ValueError):
    """The body is not a batch of its version at all (HTTP 400)."""


class RefusedEvents(ValueError):
    """A well-formed batch holds events the collector refuses (HTTP 422)."""

    def __init__(self, refusals: Sequence[Refusal], batch_size: int) -> None:
        self.refusals = list(refusals)
        self.batch_size = batch_size
        first = self.refusals[0]
        super().__init__(
            f"{len(self.refusals)} of {batch_size} events refused; "
            f"first: event {first.index}: {first.reason}"
        )


def decode_batch(version: str, body: bytes) -> List[StoredEvent]:
    """Decode an uncompressed batch body of ``version`` into the events to store.

    :raises MalformedBatch: the body is not that version's batch format.
    :raises RefusedEvents: some events are well-formed JSON but not acceptable.
    """
    decoders: Dict[str, Callable[[bytes], List[StoredEvent]]] = {
        "1": _decode_v1,
        "2": _decode_v2,
        "2j": _decode_v2j,
    }
    if version not in decoders:
        raise MalformedBatch(f"unknown batch version {version!r}; expected one of 1, 2, 2j")
    return decoders[version](body)


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedBatch(f"body is not UTF-8: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise MalformedBatch(f"body is not JSON: {exc}") from None


def _load_array(body: bytes, what: str) -> List[Any]:
    document = _load_json(body)
    if not isinstance(document, list):
        raise MalformedBatch(f"expected a JSON array of {what}, got a {type(document).__name__}")
    if not document:
        raise MalformedBatch("empty batch")
    return document


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _check_uuid(value: Any) -> Optional[str]:
    """Return why ``value`` is not a usable event uuid, or None if it is."""
    if not isinstance(value, str) or not value:
        return "uuid: missing or not a string"
    try:
        uuid_module.UUID(value)
    except ValueError:
        return f"uuid: {value[:64]!r} is not a UUID"
    return None


def _raise_refusals(refusals: List[Refusal], size: int) -> None:
    if refusals:
        raise RefusedEvents(refusals, size)


# -- v1 ----------------------------------------------------------------------


def _decode_v1(body: bytes) -> List[StoredEvent]:
    items = _load_array(body, "v1 events")
    events: List[StoredEvent] = []
    refusals: List[Refusal] = []
    for index, item in enumerate(items):
        reason = _v1_problem(item)
        if reason is not None:
            event_uuid = item.get("uuid") if isinstance(item, dict) else None
            refusals.append(
                Refusal(index, reason, event_uuid if isinstance(event_uuid, str) else None)
            )
            continue
        events.append(
            StoredEvent(
                uuid=item["uuid"],
                source=item["event_topic"],
                action=item["event_type"],
                noun="",
                timestamp_ms=item["event_ts"],
                version="1",
                document=_compact(item),
            )
        )
    _raise_refusals(refusals, len(items))
    return events


def _v1_problem(item: Any) -> Optional[str]:
    if not isinstance(item, dict):
        return f"expected a JSON object, got a {type(item).__name__}"
    for key in ("event_topic", "event_type"):
        if not isinstance(item.get(key), str) or not item[key]:
            return f"{key}: missing or not a non-empty string"
    timestamp = item.get("event_ts")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp <= 0:
        return "event_ts: missing or not a positive integer (ms)"
    uuid_problem = _check_uuid(item.get("uuid"))
    if uuid_problem:
        return uuid_problem
    if not isinstance(item.get("payload"), dict):
        return "payload: missing or not a JSON object"
    return None


# -- v2 and v2j --------------------------------------------------------------


def _read_thrift(data: bytes, struct: Any) -> None:
    """Read ``struct`` from TJSON ``data`` with Thrift's own protocol; reject trailing bytes."""
    transport = TMemoryBuffer(data)
    struct.read(TJSONProtocol(transport))
    consumed = transport._buffer.tell()
    if consumed != len(data):
        raise ValueError(f"{len(data) - consumed} bytes after the struct")


def _thrift_one(element: Any) -> ThriftEvent:
    """Decode one TJSON event given as parsed JSON; raises on anything Thrift refuses."""
    if not isinstance(element, dict):
        raise ValueError(f"expected a TJSON struct (a JSON object), got a {type(element).__name__}")
    event = ThriftEvent()
    _read_thrift(_compact(element).encode("utf-8"), event)
    return event


def _v2_problem(event: ThriftEvent) -> Optional[str]:
    for field in ("source", "action", "noun"):
        value = getattr(event, field)
        if not isinstance(value, str) or not value:
            return f"{field}: missing (a non-empty string is required)"
    timestamp = event.client_timestamp
    if not isinstance(timestamp, int) or timestamp <= 0:
        return "client_timestamp: missing or not positive (ms since the epoch)"
    return _check_uuid(event.uuid)


def _stored_v2(event: ThriftEvent, element: Any, version: str) -> StoredEvent:
    return StoredEvent(
        uuid=event.uuid,
        source=event.source,
        action=event.action,
        noun=event.noun,
        timestamp_ms=event.client_timestamp,
        version=version,
        document=_compact(element),
    )


def _check_v2_events(
    decoded: Sequence[Optional[ThriftEvent]],
    elements: Sequence[Any],
    errors: Dict[int, str],
    version: str,
) -> List[StoredEvent]:
    events: List[StoredEvent] = []
    refusals: List[Refusal] = []
    for index, (event, element) in enumerate(zip(decoded, elements)):
        if event is None:
            refusals.append(Refusal(index, errors[index]))
            continue
        problem = _v2_problem(event)
        if problem is not None:
            known_uuid = event.uuid if isinstance(event.uuid, str) else None
            refusals.append(Refusal(index, problem, known_uuid))
            continue
        events.append(_stored_v2(event, element, version))
    _raise_refusals(refusals, len(elements))
    return events


def _decode_each(elements: Sequence[Any]) -> "tuple[List[Optional[ThriftEvent]], Dict[int, str]]":
    decoded: List[Optional[ThriftEvent]] = []
    errors: Dict[int, str] = {}
    for index, element in enumerate(elements):
        try:
            decoded.append(_thrift_one(element))
        except Exception as exc:  # Thrift raises many types on bad input
            decoded.append(None)
            errors[index] = f"not a TJSON Event: {exc}"
    return decoded, errors


def _decode_v2(body: bytes) -> List[StoredEvent]:
    document = _load_json(body)
    elements = _v2_elements(document)
    batch = EventBatch()
    try:
        _read_thrift(body, batch)
    except Exception as whole_error:
        # Thrift failed on the batch: find which events it cannot read, so
        # that the answer names them (422); if none, the envelope is at fault.
        decoded, errors = _decode_each(elements)
        if not errors:
            raise MalformedBatch(f"not a TJSON EventBatch: {whole_error}") from None
        return _check_v2_events(decoded, elements, errors, "2")
    if batch.events is None or len(batch.events) != len(elements):
        raise MalformedBatch("not a TJSON EventBatch: field 1 is not a list<Event>")
    return _check_v2_events(batch.events, elements, {}, "2")


def _v2_elements(document: Any) -> List[Any]:
    """Check the ``{"1":{"lst":["rec",N,...]}}`` envelope and return the events in it."""
    shape = 'expected {"1":{"lst":["rec",N,event,...]}}'
    if not isinstance(document, dict) or set(document) != {"1"}:
        raise MalformedBatch(f"{shape}: the top level must be an object with only field 1")
    field = document["1"]
    if not isinstance(field, dict) or set(field) != {"lst"} or not isinstance(field["lst"], list):
        raise MalformedBatch(f'{shape}: field 1 must be {{"lst":[...]}}')
    header = field["lst"]
    if len(header) < 2 or header[0] != "rec":
        raise MalformedBatch(f'{shape}: the list must hold structs ("rec")')
    count, elements = header[1], header[2:]
    if isinstance(count, bool) or not isinstance(count, int) or count != len(elements):
        raise MalformedBatch(f"{shape}: the list says {count!r} events but holds {len(elements)}")
    if not elements:
        raise MalformedBatch("empty batch")
    return elements


def _decode_v2j(body: bytes) -> List[StoredEvent]:
    elements = _load_array(body, "TJSON events")
    decoded, errors = _decode_each(elements)
    return _check_v2_events(decoded, elements, errors, "2j")
