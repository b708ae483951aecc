"""The collector's sinks: where an accepted batch goes, and the contract every sink keeps.

The collector (:mod:`baseplate_events.collector.service`) checks and
decodes a POSTed batch into :class:`StoredEvent` objects, then hands them to
one sink, chosen in the settings (``sink = sqlite | jsonl | kafka``). The app
answers 2xx only after the sink has returned for the whole batch, so a sink
must have made every event durable (committed, flushed, acknowledged) before
:meth:`Sink.store` returns.

The contract
------------

``Sink.store(stream, events) -> List[Optional[str]]``
    ``stream`` is ``"v1"``, ``"v2"`` or ``"v2j"`` (the path the batch came
    in on). ``events`` is the whole batch, in order, every event already
    decoded and checked. The answer holds one entry per event, in the same
    order: ``None`` when nothing is wrong with that event, or a string giving
    why this one event cannot be stored (a value SQLite cannot hold, an
    integer out of range, a message over Kafka's size limit). The app then answers 422
    naming each refused event and its reason, so that the publisher bisects
    the batch and sets only those events aside. A sink may store the other
    events of a batch that has refusals (the publisher re-sends them and the
    uuid de-duplicates them) or store none of them; it must not half-store one.

    An event must never be refused for a reason that is the sink's, not the
    event's: the publisher would set a good event aside.

``SinkUnavailable``
    Raised by ``store`` when the sink cannot take the batch now (database
    locked or gone, broker unreachable, a delivery timeout). The app answers
    503 with ``Retry-After``; the publisher keeps the batch and retries, so
    nothing is lost. Any other exception out of ``store`` is a bug in the sink;
    the app logs it and answers 503 too (never 500: the publisher would
    bisect and dead-letter good events).

``Sink.ready() -> bool``
    Whether the sink can take a batch now; ``GET /readyz`` answers 503 while
    it is False, so that a load balancer sends batches elsewhere. It must be
    cheap (it is polled) and must not raise.

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

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence

from ..documents import StructShape
from ..schema import named_document

__all__ = ["STREAMS", "Sink", "SinkUnavailable", "StoredEvent", "create_sink"]

#: The streams a batch can arrive on, by path: ``/v1``, ``/v2`` and ``/v2j``.
STREAMS = ("v1", "v2", "v2j")


class SinkUnavailable(Exception):
    """The sink cannot take the batch now; the app answers 503 with ``Retry-After``."""


@dataclass(frozen=True)
class StoredEvent:
    """One accepted event, as the app hands it to a sink."""

    #: the event's uuid in canonical form: lower case, hyphenated, no braces or
    #: ``urn:uuid:`` (the de-duplication key, and Kafka's message key)
    uuid: str
    #: the wire version it came in: ``"1"``, ``"2"`` or ``"2j"`` (its stream is ``"v" + version``)
    version: str
    #: the event's own JSON as it was received, UTF-8 (one element of the batch)
    raw: bytes
    #: the decoded generic document. v1: the JSON object. v2/v2j: a dict of
    #: field id (int) → value, where a nested struct is again such a dict, a
    #: list or set a list, a map a dict, and i8..i64 int, dbl float, tf bool,
    #: str str (binary fields stay their base64 text); see
    #: :mod:`baseplate_events.collector.documents`
    document: Any
    #: when the collector received it, in ms since the epoch
    received_ms: int
    #: the schema (``--schema``) the document was checked against, if any
    schema: Optional[StructShape] = None

    @functools.cached_property
    def named(self) -> Optional[Dict[str, Any]]:
        """The document with field names (v2 with a schema), the v1 object itself, or None."""
        if self.version == "1":
            return self.document  # type: ignore[no-any-return]
        if self.schema is None:
            return None
        return named_document(self.document, self.schema)


class Sink(Protocol):
    """Where accepted events go. See the module docstring for the contract."""

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Optional[str]]:
        """Make the whole batch durable; one entry per event: None (stored) or a reason.

        :raises SinkUnavailable: the sink cannot take the batch now.
        """
        ...

    def ready(self) -> bool:
        """Whether a batch can be taken now (cheap; never raises)."""
        ...

    def close(self) -> None:
        """Flush and release everything (called once, at shutdown)."""
        ...


def create_sink(name: str, options: Mapping[str, str]) -> Sink:
    """The sink ``name`` (``sqlite``, ``jsonl``, ``kafka``) made from its options.

    :raises ConfigError: an option is invalid.
    :raises SinkUnavailable: the sink cannot be reached at start-up (the app
        still starts, answering 503 until it can).
    """
    module = importlib.import_module(f"{__name__}.{name}")
    return module.create(options)  # type: ignore[no-any-return]
