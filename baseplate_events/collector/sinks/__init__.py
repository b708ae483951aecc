"""The collector's sinks: where an accepted batch goes, and the contract every sink keeps.

The collector (:mod:`baseplate_events.collector.service.handler`) checks and
decodes a POSTed batch into :class:`StoredEvent` objects, then hands them to
one sink, chosen in the settings (``sink = sqlite | jsonl | kafka``). The app
answers 2xx only after the sink has returned for the whole batch, so a sink
must have made every event durable (committed, flushed, acknowledged) before
:meth:`Sink.store` returns.

The contract
------------

Every sink subclasses :class:`Sink`; what a sink can do is said by the base
class's attributes and methods, never found by duck typing.

``Sink.store(stream, events) -> List[Outcome]``
    ``stream`` is ``"v1"``, ``"v2"`` or ``"v2j"`` (the path the batch came
    in on). ``events`` is the whole batch, in order, every event already
    decoded and checked. The answer holds one :class:`Outcome` per event, in
    the same order: :data:`STORED`, :data:`DUPLICATE` (the sink already had
    an event with that uuid), or ``Outcome.refused(reason)`` giving why this
    one event cannot be stored (a value SQLite cannot hold, an integer out of
    range, a message over Kafka's size limit). The app answers 200 with the
    stored and duplicate counts, or 422 naming each refused event and its
    reason, so that the publisher bisects the batch and sets only those
    events aside. A sink may store the other events of a batch that has
    refusals (the publisher re-sends them and the uuid de-duplicates them) or
    store none of them; it must not half-store one.

    An event must never be refused for a reason that is the sink's, not the
    event's: the publisher would set a good event aside.

``SinkUnavailable``
    Raised by ``store`` when the sink's infrastructure cannot take the batch
    now (a disk full or read-only, a file not permitted, a lock held past its
    timeout, a broker down, a producer being recreated, a delivery timeout),
    and only then. The app answers 503 with ``Retry-After``; the publisher
    keeps the batch and retries, so nothing is lost. Any other exception out
    of ``store`` is a bug in the sink: the app logs it and answers 500 with
    the reason, which the publisher bisects; it sets an event aside only once
    the collector has accepted others since, so a bug stalls nothing and a
    blanket 500 sets nothing aside. A 503 for a bug would stall the queue:
    the publisher retries a 503 for ever.

``Sink.ready() -> bool``
    Whether the sink can take a batch now; ``GET /readyz`` answers 503 while
    it is False, so that a load balancer sends batches elsewhere. It must be
    cheap (it is polled), must not raise and must not wait (for a lock held by
    a batch, for I/O): a probe that waits behind batches is a probe that
    times out. The base class answers True.

``Sink.probe() -> None``
    Check the sink itself, as a batch would use it: a write in a savepoint
    (SQLite), a small file written and synced (JSONL), broker metadata
    (Kafka), within the sink's own bound; raise :class:`SinkUnavailable` if
    it cannot. After a batch the sink could not take, ``/readyz`` answers 503
    and the collector probes the sink, at most every 2 s, in a thread of its
    own, until a probe succeeds (see
    ``baseplate_events.collector.service.handler.SinkHealth``). The base class
    probes with ``ready()``.

``Sink.describe() -> str``
    Where the sink keeps events, for the start line (``sqlite
    /var/lib/baseplate-events/events.sqlite3 (WAL, shared by every worker)``).
    The base class gives :attr:`Sink.name`.

``Sink.reads_documents`` (class attribute, default True)
    False for a sink that reads only ``uuid`` and ``raw`` (Kafka, JSONL):
    the collector then checks each event without building its document,
    which :attr:`StoredEvent.document` still reads on first use.

``Sink.count_response(status)`` and ``Sink.record_refusals(stream, refusals, received_ms)``
    Told of every answer's status and of every event refused with a 422, for
    a sink that keeps a journal of them (the demo's page does); the base
    class does nothing. They may raise: the collector logs the error and
    answers all the same.

``Sink.close() -> None``
    Flush and release everything; called once when the app shuts down.

Sinks are created per process (each gunicorn worker has its own), from the
settings, by :func:`create_sink`: the sink ``NAME`` lives in the module
``baseplate_events.collector.sinks.NAME``, whose ``create(options)`` returns
it, ``options`` being the settings ``NAME.*`` with the prefix stripped (all
strings). It raises :class:`~baseplate_events.ConfigError` for a bad option.
A sink that needs a connection makes it in its constructor or lazily, never at
import; a sink module is imported only when chosen, so its dependency
(confluent-kafka) stays optional.
"""
from __future__ import annotations

import importlib
import json
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence

from ..decode.documents import StructShape, read_struct
from ..decode.schema import named_document

__all__ = ["DUPLICATE", "STORED", "STREAMS", "UNREAD", "Outcome", "Sink", "SinkUnavailable",
           "StoredEvent", "create_sink"]

#: The streams a batch can arrive on, by path: ``/v1``, ``/v2`` and ``/v2j``.
STREAMS = ("v1", "v2", "v2j")


class SinkUnavailable(Exception):
    """The sink cannot take the batch now; the app answers 503 with ``Retry-After``."""


class _Unread:
    """The document of an event decoded without one (see :func:`decode_batch`)."""

    def __repr__(self) -> str:
        return "UNREAD"


#: What :class:`StoredEvent` is given for a document it reads from ``raw`` when asked.
UNREAD: Any = _Unread()


class StoredEvent:
    """One accepted event, as the app hands it to a sink.

    A plain class with slots: the collector makes one per event, and a frozen
    dataclass cost a microsecond of each event's budget.
    """

    __slots__ = ("_document", "_named", "raw", "received_ms", "schema", "uuid", "version")

    def __init__(self, uuid: str, version: str, raw: bytes, document: Any = UNREAD,
                 received_ms: int = 0, schema: Optional[StructShape] = None) -> None:
        #: the event's uuid in canonical form: lower case, hyphenated, no braces or
        #: ``urn:uuid:`` (the de-duplication key, and Kafka's message key)
        self.uuid = uuid
        #: the wire version it came in: ``"1"``, ``"2"`` or ``"2j"`` (stream ``"v" + version``)
        self.version = version
        #: the event's own JSON as it was received, UTF-8 (one element of the batch)
        self.raw = raw
        self._document = document
        #: when the collector received it, in ms since the epoch
        self.received_ms = received_ms
        #: the schema (``--schema``) the document was checked against, if any
        self.schema = schema
        self._named: Any = UNREAD

    @property
    def document(self) -> Any:
        """The decoded generic document.

        v1: the JSON object. v2/v2j: a dict of field id (int) → value, where a
        nested struct is again such a dict, a list or set a list, a map a dict,
        and i8..i64 int, dbl float, tf bool, str str (binary fields stay their
        base64 text); see :mod:`baseplate_events.collector.decode.documents`. An
        event decoded without it (the Kafka and JSONL sinks never read it) has
        it read from ``raw`` on first use.
        """
        if self._document is UNREAD:
            parsed = json.loads(self.raw)
            self._document = parsed if self.version == "1" else read_struct(parsed, self.schema)
        return self._document

    @property
    def named(self) -> Optional[Dict[str, Any]]:
        """The document with field names (v2 with a schema), the v1 object itself, or None."""
        if self._named is UNREAD:
            if self.version == "1":
                self._named = self.document
            elif self.schema is None:
                self._named = None
            else:
                self._named = named_document(self.document, self.schema)
        return self._named  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredEvent):
            return NotImplemented
        return ((self.uuid, self.version, self.raw, self.document, self.received_ms, self.schema)
                == (other.uuid, other.version, other.raw, other.document, other.received_ms,
                    other.schema))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"StoredEvent(uuid={self.uuid!r}, version={self.version!r}, raw={self.raw!r}, "
                f"document={self._document!r}, received_ms={self.received_ms!r})")


class Outcome:
    """What a sink did with one event: stored, duplicate, or refused with a reason.

    :data:`STORED` and :data:`DUPLICATE` are the only two of their kind; a
    refusal is made by :meth:`refused` and carries the reason the 422 names.
    """

    __slots__ = ("kind", "reason")

    def __init__(self, kind: str, reason: Optional[str] = None) -> None:
        #: ``"stored"``, ``"duplicate"`` or ``"refused"``
        self.kind = kind
        #: why the event cannot be stored (a refusal only)
        self.reason = reason

    @classmethod
    def refused(cls, reason: str) -> "Outcome":
        """This one event cannot be stored, because of ``reason`` (the event's, not the sink's)."""
        return cls("refused", reason)

    @property
    def is_refused(self) -> bool:
        """Whether the event was refused (not stored, not already there)."""
        return self.kind == "refused"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.kind, self.reason) == (other.kind, other.reason)

    def __hash__(self) -> int:
        return hash((self.kind, self.reason))

    def __repr__(self) -> str:
        return (f"Outcome.refused({self.reason!r})" if self.kind == "refused"
                else self.kind.upper())


#: the event is now durable in the sink
STORED = Outcome("stored")
#: the sink already had an event with this uuid (kept once; still acknowledged)
DUPLICATE = Outcome("duplicate")


class Sink:
    """Where accepted events go. See the module docstring for the contract.

    Subclasses implement :meth:`store`, and override what else they can do.
    """

    #: the sink's name in the settings (``sink = NAME``), for the start line
    name: ClassVar[str] = "sink"
    #: False: the sink reads only ``uuid`` and ``raw``, never the decoded document
    reads_documents: ClassVar[bool] = True

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Outcome]:
        """Make the whole batch durable; one :class:`Outcome` per event, in order.

        :raises SinkUnavailable: the sink cannot take the batch now.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement store()")

    def ready(self) -> bool:
        """Whether a batch can be taken now (cheap; never raises)."""
        return True

    def probe(self) -> None:
        """Check the sink as a batch would use it.

        :raises SinkUnavailable: it cannot take a batch.
        """
        if not self.ready():
            raise SinkUnavailable("the sink says it is not ready")

    def describe(self) -> str:
        """Where the sink keeps events, for the start line."""
        return self.name

    def count_response(self, status: int) -> None:
        """The app answered a batch with ``status`` (a journal may count it)."""

    def record_refusals(self, stream: str, refusals: Sequence[Mapping[str, Any]],
                       received_ms: int) -> None:
        """The app answered 422 refusing these events (``index``, ``uuid``, ``reason`` each)."""

    def close(self) -> None:
        """Flush and release everything (called once, at shutdown)."""


def create_sink(name: str, options: Mapping[str, str]) -> Sink:
    """The sink ``name`` (``sqlite``, ``jsonl``, ``kafka``) made from its options.

    :raises ConfigError: an option is invalid.
    :raises SinkUnavailable: the sink cannot be reached at start-up (the app
        still starts, answering 503 until it can).
    """
    module = importlib.import_module(f"{__name__}.{name}")
    return module.create(options)  # type: ignore[no-any-return]
