"""Decode and check the batches the publisher POSTs, one format per version.

The collector's reading of the publisher's three wire formats:

- ``/v1``: ``[e1, e2, ...]``, each a legacy object with ``event_topic``,
  ``event_type``, ``event_ts``, ``uuid`` and ``payload``;
- ``/v2``: ``{"1":{"lst":["rec",N,e1,...]}}``, an ``EventBatch`` struct;
- ``/v2j``: ``[e1, e2, ...]``, each event a TJSON struct.

v2 events are any TJSON struct (:mod:`baseplate_events.collector.decode.documents`),
checked against the user's schema when one is given. Each event's uuid, the
de-duplication key, is found as :class:`EventReader` says and put in canonical
form (braces, ``urn:uuid:``, upper case and bare hex are all one id).

A body that is not the batch shape of its version raises :class:`MalformedBatch`
(the collector answers 400). A well-formed batch holding events the collector
will not take raises :class:`RefusedEvents` naming each one (422); nothing of
such a batch is stored, so that a publisher can bisect it.

One reader for v2 events, whatever their schema: msgspec splits the batch
into each event's bytes as received. For a sink that keeps only each event's
bytes and uuid (Kafka, JSONL; ``documents=False``), each event is decoded by
a msgspec decoder compiled from the struct's shape
(:mod:`~baseplate_events.collector.decode.typed`: from ``--schema``, or learned from
the events taken so far), which checks every type tag, range, count and
required field while it parses and finds the uuid, without building the
document. An event it does not take, and every event for a sink that reads
documents (SQLite), is parsed by msgspec and read by
:func:`~.documents.read_struct`, which builds the document or says why not
(the reason of a 422). ``make bench`` measures both ("collector stage" rows).

The general path, for v1 and for what msgspec will not parse: the body is
parsed by the library's JSON scanner one event at a time
(:meth:`json.JSONDecoder.raw_decode`), which returns each event's end offset,
so that every event's own bytes are kept as received without serializing it
again. A body the scanner cannot walk (odd whitespace, an error) is parsed
whole with :func:`json.loads` to say what is wrong, or, if nothing is, to be
taken anyway. The library parser takes a bare ``NaN`` or ``Infinity``, which
are not JSON: it reads them as :class:`~.documents.BareConstant`, and the
event holding one is refused naming the field (msgspec refuses them, and
``1e400``, outright, which sends the batch down this path).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import msgspec

from .documents import (
    MAX_DEPTH,
    BareConstant,
    StructShape,
    TJSONError,
    canonical_uuid,
    read_struct,
)
from ..sinks import UNREAD, StoredEvent
from .envelope import MalformedBatch, array_events, v2_events, written
from .typed_reader import TypedReader
from .v1_events import Checked, check_v1

__all__ = [
    "VERSIONS",
    "EventReader",
    "MalformedBatch",
    "Refusal",
    "RefusedEvents",
    "canonical_uuid",
    "decode_batch",
]

logger = logging.getLogger("baseplate_events.collector.batches")  # the name users configure

VERSIONS = ("1", "2", "2j")

# JSON's whitespace is these four (\s would also take NBSP, VT, FF, \x1c..\x1f, \x85).
_WS = "[ \t\n\r]*"
_V2_HEAD = re.compile(r'_\{_"1"_:_\{_"lst"_:_\[_"rec"_,_(0|[1-9][0-9]{0,8})_,_'.replace("_", _WS))
_V2_TAIL = re.compile(r"_\]_\}_\}_\Z".replace("_", _WS))
_ARRAY_HEAD = re.compile(r"_\[_".replace("_", _WS))
_ARRAY_TAIL = re.compile(r"_\]_\Z".replace("_", _WS))
_COMMA = re.compile(r"_,_".replace("_", _WS))
#: the library parser, with a bare NaN or Infinity (not JSON) read as a BareConstant to refuse
_scan = json.JSONDecoder(parse_constant=BareConstant).raw_decode
#: the v2 envelope and the v2j array with each event left as its bytes (msgspec.Raw)
_SPLIT_V2 = msgspec.json.Decoder(Dict[str, Dict[str, List[msgspec.Raw]]]).decode
_SPLIT_ARRAY = msgspec.json.Decoder(List[msgspec.Raw]).decode
_parse = msgspec.json.Decoder().decode
#: (parsed event, its JSON text as received, or None where it must be written anew)
Element = Tuple[Any, Optional[str]]


class Unreadable:
    """An element the library parser cannot read for a reason of its own (nested past the
    parser's recursion limit, an integer of more digits than Python converts): that
    event's refusal, where a syntax error is the whole body's."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass(frozen=True)
class Refusal:
    """Why the event at ``index`` of a batch was refused."""

    index: int
    reason: str
    uuid: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "reason": self.reason}


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


@dataclass(frozen=True)
class EventReader:
    """How v2 events are read: the schema (or none) and where each event's uuid is.

    :param schema: the user's struct (``--schema``); None takes any struct.
    :param uuid_field: the id of the top-level field holding the uuid
        (``--uuid-field``). Without it: the schema's field named ``uuid``, or,
        with no schema, the one top-level string field whose value is a UUID.
    """

    schema: Optional[StructShape] = None
    uuid_field: Optional[int] = None
    _uuid_id: Optional[int] = field(init=False, default=None, repr=False)
    _uuid_name: str = field(init=False, default="", repr=False)
    _typed: Any = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        fid = self.uuid_field
        if fid is None and self.schema is not None:
            fid = next((i for i, f in self.schema.fields.items() if f.name == "uuid"), None)
        known = self.schema.fields.get(fid) if self.schema is not None and fid is not None else None
        object.__setattr__(self, "_uuid_id", fid)
        object.__setattr__(self, "_uuid_name", known.name if known is not None else f"field {fid}")
        object.__setattr__(self, "_typed", TypedReader(self.schema, fid))

    @property
    def struct_name(self) -> str:
        return self.schema.name if self.schema is not None else "struct"

    def uuid_of(self, document: Dict[int, Any]) -> Tuple[Optional[str], Optional[str]]:
        """(canonical uuid, None), or (None, why there is none) for a v2 document."""
        fid = self._uuid_id
        if fid is not None:
            value = document.get(fid)
            hint = f" (--uuid-field {self.uuid_field})" if self.uuid_field is not None else ""
            if type(value) is not str:
                return None, f"{self._uuid_name}: missing or not a string{hint}"
            canonical = canonical_uuid(value)
            if canonical is None:
                return None, f"{self._uuid_name}: {value[:64]!r} is not a UUID{hint}"
            return canonical, None
        # Only strings of a UUID's lengths (32 to 45 characters) are worth parsing.
        found = [(i, u) for i, u in ((i, canonical_uuid(v)) for i, v in document.items()
                                     if type(v) is str and 32 <= len(v) <= 45) if u]
        if len(found) == 1:
            return found[0][1], None
        if not found:
            return None, ("no top-level string field holds a UUID; give the uuid field's id "
                          "with --uuid-field ID (or --schema module:Struct with a 'uuid' field)")
        ids = ", ".join(str(i) for i, _ in found)
        return None, (f"fields {ids} all hold UUIDs; say which is the event's uuid with "
                      f"--uuid-field ID")


def decode_batch(
    version: str, body: bytes, reader: EventReader = EventReader(), received_ms: int = 0,
    documents: bool = False,
) -> List[StoredEvent]:
    """Decode an uncompressed batch body of ``version`` into the events to store.

    :param documents: build each v2 event's document now (a sink that reads
        them all, SQLite); otherwise an event that is surely well-formed gets
        its document only if :attr:`StoredEvent.document` is read.
    :raises MalformedBatch: the body is not that version's batch format.
    :raises RefusedEvents: some events are well-formed JSON but not acceptable.
    """
    if version not in VERSIONS:
        raise MalformedBatch(f"unknown batch version {version!r}; expected one of 1, 2, 2j")
    if version != "1":  # msgspec checks the UTF-8 as it parses every byte
        taken = _decode_v2(version, body, reader, received_ms, documents)
        if taken is not None:
            return taken
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBatch(f"body is not UTF-8: {exc}") from None
    return _decode_general(version, text, reader, received_ms)


def _decode_general(version: str, text: str, reader: EventReader, received_ms: int
                    ) -> List[StoredEvent]:
    """Every version, into documents, with the library JSON parser (see the module's notes)."""
    elements = _split_fast(version, text)
    if elements is None:
        elements = _split_slow(version, text)
    events: List[StoredEvent] = []
    refusals: List[Refusal] = []
    check = check_v1 if version == "1" else _check_v2
    reason: Optional[str]
    for index, (item, raw) in enumerate(elements):
        try:
            if type(item) is Unreadable:  # the last element: the split stopped at it
                checked: Checked = (None, None, item.reason)
            else:
                checked = check(item, raw, reader)
            event_uuid, document, reason = checked
            if reason is None and not refusals:
                data = raw.encode("utf-8") if raw is not None else written(item)
        except Exception as exc:  # a bug here must cost one event a 422, never the batch a 500
            event_uuid, document, reason = None, None, _decode_failure(exc, index, version)
        if reason is not None:
            refusals.append(Refusal(index, reason, event_uuid))
        elif not refusals:
            events.append(StoredEvent(event_uuid, version, data,  # type: ignore[arg-type]
                                      document, received_ms, reader.schema))
    if refusals:
        raise RefusedEvents(refusals, len(elements))
    return events


def _decode_v2(version: str, body: bytes, reader: EventReader, received_ms: int,
               documents: bool) -> Optional[List[StoredEvent]]:
    """The events of a v2/v2j batch, or :class:`RefusedEvents`; None to take the general path.

    msgspec splits the batch into each event's bytes as received (``Raw``).
    For a sink that needs only bytes and uuid, each event is decoded by the
    reader's compiled decoder (:mod:`~baseplate_events.collector.decode.typed`),
    which checks it while parsing and finds its uuid; an event it does not
    take, or every event for a sink that reads documents, is parsed by msgspec
    and read by :func:`read_struct`, which builds the document or says why
    not. JSON msgspec will not parse (a bare NaN, ``1e400``, a lone
    surrogate, an envelope off the publisher's shape) sends the whole batch
    down the general path, whose library parser says what is wrong.
    """
    try:
        if version == "2":
            envelope = _SPLIT_V2(body)
            outer = envelope.get("1") if len(envelope) == 1 else None
            items = outer.get("lst") if outer is not None and len(outer) == 1 else None
            if (items is None or len(items) < 3 or bytes(items[0]) != b'"rec"'
                    or bytes(items[1]) != b"%d" % (len(items) - 2)):
                return None
            del items[:2]
        else:
            items = _SPLIT_ARRAY(body)
            if not items:
                return None
    except Exception:  # msgspec.DecodeError, RecursionError...: the general path says what
        return None
    events: List[StoredEvent] = []
    refusals: List[Refusal] = []
    typed = reader._typed
    check = typed.check
    schema = reader.schema
    raws = list(map(bytes, items))
    if not documents:
        # never raises: None leaves the event to read_struct
        uuids: List[Optional[str]] = list(map(check, raws))
        if None not in uuids:  # the usual batch: every event taken by the compiled decoder
            return [StoredEvent(event_uuid, version, raw, UNREAD,  # type: ignore[arg-type]
                                received_ms, schema) for event_uuid, raw in zip(uuids, raws)]
        first_check = check
    append = events.append
    for index, raw in enumerate(raws):
        if not documents:
            event_uuid = uuids[index]
            if event_uuid is None and check is not first_check:  # a wider shape learned since
                event_uuid = check(raw)
            if event_uuid is not None:
                if not refusals:
                    append(StoredEvent(event_uuid, version, raw, UNREAD, received_ms, schema))
                continue
        try:
            parsed = _parse(raw)
        except Exception:  # msgspec.DecodeError, RecursionError...: the general path says what
            return None
        try:
            event_uuid, document, reason = _check_v2(parsed, None, reader)
            if reason is None and not documents and typed.learning:
                typed.learn(parsed)
                check = typed.check
        except Exception as exc:  # a bug here must cost one event a 422, never the batch a 500
            event_uuid, document, reason = None, None, _decode_failure(exc, index, version)
        if reason is not None:
            refusals.append(Refusal(index, reason, event_uuid))
        elif not refusals:
            events.append(StoredEvent(event_uuid, version, raw,  # type: ignore[arg-type]
                                      document, received_ms, schema))
    if refusals:
        raise RefusedEvents(refusals, len(items))
    return events


def _split_fast(version: str, text: str) -> Optional[List[Element]]:
    """Each event with its text, walking the array with the JSON scanner; None to go slow."""
    head = (_V2_HEAD if version == "2" else _ARRAY_HEAD).match(text)
    if head is None:
        return None
    elements: List[Element] = []
    position = head.end()
    try:
        while True:
            item, end = _scan(text, position)
            elements.append((item, text[position:end]))
            comma = _COMMA.match(text, end)
            if comma is None:
                break
            position = comma.end()
    except RecursionError:
        # The parser cannot read this event at all, so neither can it find where it
        # ends: the event is refused, the ones before it are checked, the rest resent.
        elements.append((Unreadable(f"nested too deeply for the JSON parser; an event may "
                                    f"nest at most {MAX_DEPTH} levels"), None))
        return elements
    except ValueError as exc:
        if "integer string conversion" not in str(exc):
            return None  # a syntax error: _split_slow says where
        elements.append((Unreadable(f"a number has more digits than the collector reads: "
                                    f"{exc}"), None))
        return elements
    if (_V2_TAIL if version == "2" else _ARRAY_TAIL).match(text, end) is None:
        return None
    if version == "2" and int(head.group(1)) != len(elements):
        return None
    return elements


def _split_slow(version: str, text: str) -> List[Element]:
    """Parse the whole body to say what is wrong with it (or take an unusual but valid one)."""
    try:
        document = json.loads(text, parse_constant=BareConstant)
    except (ValueError, RecursionError) as exc:
        raise MalformedBatch(f"body is not JSON: {exc}") from None
    items = v2_events(document) if version == "2" else array_events(document, version)
    # No byte offsets from json.loads: each event taken is written anew (_written).
    return [(item, None) for item in items]


def _check_v2(item: Any, raw: Optional[str], reader: EventReader) -> Checked:
    try:
        document = read_struct(item, reader.schema)
    except TJSONError as exc:
        return None, None, f"not a TJSON {reader.struct_name}: {exc}"
    event_uuid, problem = reader.uuid_of(document)
    return event_uuid, document, problem


def _decode_failure(exc: Exception, index: int, version: str) -> str:
    """Log a bug met while decoding one event; the reason its 422 gives."""
    logger.exception("collector: failed to decode event %d of a v%s batch", index, version)
    return f"cannot decode this event: {type(exc).__name__}: {exc}"
