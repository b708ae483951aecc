"""``baseplate-events-tail``: read back what a collector stored, from any sink.

The last stage of the pipeline, for a person asking "what arrived?"::

    publisher ──POST──▶ collector ──▶ sink (Kafka / JSONL files / SQLite) ──▶ baseplate-events-tail

It takes the collector's own flags (``--sink``, ``--option SINK.NAME=VALUE``,
``--schema``, ``--uuid-field``), so that one command line serves both, and
works like ``tail``: the last 10 events by default, ``--from-beginning``,
``--follow``, ``--limit``. Each sink has its reader, which yields
:class:`TailedEvent` records (the event's bytes as stored, and where they
were read); :mod:`.output` prints them, one JSON object per line or an
aligned table.

- :mod:`.kafka`: every partition by ``assign``, no offsets committed;
- :mod:`.files`: the JSONL sink's files (``*.jsonl``, and ``.part`` when asked);
- :mod:`.sqlite`: the SQLite sink's ``events`` table, read-only.
"""
from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from typing import Any, Dict, Generator, Optional, Union

__all__ = [
    "CAUGHT_UP",
    "Events",
    "FilePosition",
    "KafkaPosition",
    "Reader",
    "RowPosition",
    "TailRequest",
    "TailedEvent",
    "UnreadableSink",
]


class UnreadableSink(Exception):
    """The sink cannot be read (no such file, no broker, no permission); the message says why."""


@dataclass(frozen=True)
class KafkaPosition:
    """Where a Kafka message was read."""

    topic: str
    partition: int
    offset: int

    def as_dict(self) -> Dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    def label(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class FilePosition:
    """Where a line of a JSONL file was read (``line`` counts from 1).

    ``pending``: the line was read from a ``.part`` file, which its writer may
    still cut back (a failed write is cut back and answered 503, and the
    publisher sends the batch again).
    """

    file: str
    line: int
    pending: bool = False

    def as_dict(self) -> Dict[str, Any]:
        if self.pending:
            return {"file": self.file, "line": self.line, "pending": True}
        return {"file": self.file, "line": self.line}

    def label(self) -> str:
        import os

        return f"{os.path.basename(self.file)}:{self.line}{' (pending)' if self.pending else ''}"


@dataclass(frozen=True)
class RowPosition:
    """A row of the SQLite sink's ``events`` table (its ``rowid``), and how often it arrived."""

    row: int
    receipts: int = 1

    def as_dict(self) -> Dict[str, Any]:
        return {"row": self.row, "receipts": self.receipts}

    def label(self) -> str:
        return f"row {self.row}" + (f" (x{self.receipts})" if self.receipts != 1 else "")


Position = Union[KafkaPosition, FilePosition, RowPosition]
#: What a reader's :meth:`Reader.events` returns: events, and :data:`CAUGHT_UP` marks.
Events = Generator[Optional["TailedEvent"], None, None]


class TailedEvent:
    """One stored event as a reader found it: its uuid, stream, bytes and position.

    A plain class with slots: the JSONL reader makes 50,000 a second.
    """

    __slots__ = ("position", "raw", "received_ms", "stream", "uuid")

    def __init__(self, uuid: str, stream: str, received_ms: int, raw: bytes,
                 position: Position) -> None:
        #: the event's uuid as the sink stored it (canonical: the Kafka key, the JSONL
        #: line's and the SQLite row's ``uuid``)
        self.uuid = uuid
        #: ``v1``, ``v2`` or ``v2j``: the path the batch came in on
        self.stream = stream
        #: when the collector received it, in ms since the epoch (Kafka: the message's
        #: timestamp, the producer's create time)
        self.received_ms = received_ms
        #: the event's own JSON, exactly as the publisher sent it
        self.raw = raw
        self.position = position

    def __repr__(self) -> str:
        return (f"TailedEvent(uuid={self.uuid!r}, stream={self.stream!r}, "
                f"received_ms={self.received_ms!r}, position={self.position!r})")


@dataclass(frozen=True)
class TailRequest:
    """What to read: like ``tail``'s flags."""

    #: the last N events (Kafka: of each partition); None: everything stored
    last: Optional[int] = 10
    #: keep reading as events arrive
    follow: bool = False
    #: Kafka: seconds with no message, after every partition reached its high
    #: watermark of the start, before the reader counts itself caught up
    idle: float = 1.0
    #: JSONL: also read the whole lines of ``.part`` files (always with ``follow``)
    pending: bool = False
    #: JSONL: order events across files by received time, not by file name
    merge: bool = False


#: What a reader yields (in place of an event) once it has given everything
#: stored so far: the caller flushes its output. With ``follow`` it comes
#: again after each later burst.
CAUGHT_UP = None


class Reader(abc.ABC):
    """Reads one sink back. Each sink's reader implements :meth:`events`."""

    #: how many stored records could not be read as events (each one reported on
    #: stderr, naming where it is); the command then exits 1
    problems: int = 0

    @abc.abstractmethod
    def events(self, request: TailRequest,
               stop: threading.Event) -> Events:
        """The events asked for, oldest first, then :data:`CAUGHT_UP`; with
        ``request.follow``, then each new event as it is stored (and
        :data:`CAUGHT_UP` after each burst) until ``stop`` is set.

        :raises UnreadableSink: the sink cannot be read; the message says why and the fix.
        """
