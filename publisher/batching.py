"""Batch bodies: v1 ``[e1,e2]``, v2 ``{"1":{"lst":["rec",N,e1,e2]}}``, 2j ``[e1,e2]``.

Events travel through the publisher as *chunks*: the events taken off the
queue in one wake-up, joined with commas, plus their lengths. A batch body is
then one ``join`` over chunks, not one operation per event. Sizes are counted
as baseplate.py counts them (the format's overhead plus each event and its
comma), so a batch never holds more than ``max_bytes``; an event is never split
or reordered. A single event larger than ``max_bytes`` travels alone.

:class:`Assembler` cuts the batches out of the spool for the sender thread, in
order, from the last acknowledged position.
"""
from __future__ import annotations

import array
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from .record import join_events
from .sections import BatchSection
from .spool_format import Position

if TYPE_CHECKING:
    from .spool import Spool

# baseplate.py counts the length of its v2 header *template*
# '{"1":{"lst":["rec",%01d,' plus ']}}'; keep the same arithmetic.
_V2_OVERHEAD = len('{"1":{"lst":["rec",%01d,') + len("]}}")
_LIST_OVERHEAD = len("[]")


def overhead(version: str) -> int:
    """Bytes a batch of ``version`` counts before its first event."""
    return _V2_OVERHEAD if version == "2" else _LIST_OVERHEAD


def _ends(version: str, count: int) -> Tuple[bytes, bytes]:
    """What goes before and after the comma-joined events in a batch of ``version``."""
    if version == "2":
        return b'{"1":{"lst":["rec",%d,' % count, b"]}}"
    return b"[", b"]"


def wrap(version: str, joined: bytes, count: int) -> bytes:
    """Wrap comma-joined events into the batch body of ``version``."""
    head, tail = _ends(version, count)
    return b"".join((head, joined, tail))


def build_body(version: str, events: Sequence[bytes]) -> bytes:
    """The batch body holding ``events`` in order."""
    return wrap(version, join_events(events)[0], len(events))


@dataclass
class Chunk:
    """Consecutive events, comma-joined, with each event's length.

    ``joined`` may be a memoryview into a spool read buffer: slicing and
    splitting copy nothing, and the batch body is the one copy.
    """

    joined: "bytes | memoryview"
    lengths: "array.array[int]"

    @property
    def count(self) -> int:
        return len(self.lengths)

    @property
    def counted_size(self) -> int:
        """What these events add to a batch: each event plus its comma."""
        return len(self.joined) + 1 if self.lengths else 0

    def events(self) -> List[bytes]:
        """The individual events (for the rare paths: splitting and dead letters)."""
        out: List[bytes] = []
        start = 0
        joined = self.joined
        for length in self.lengths:
            out.append(bytes(joined[start : start + length]))
            start += length + 1
        return out

    def split(self, k: int) -> Tuple["Chunk", "Chunk"]:
        """The first ``k`` events and the rest."""
        if k <= 0:
            return Chunk(b"", array.array("I")), self
        if k >= self.count:
            return self, Chunk(b"", array.array("I"))
        offset = sum(self.lengths[:k]) + k
        return (
            Chunk(self.joined[: offset - 1], self.lengths[:k]),
            Chunk(self.joined[offset:], self.lengths[k:]),
        )

    def fitting(self, room: int) -> int:
        """How many leading events fit in ``room`` counted bytes."""
        if self.counted_size <= room:
            return self.count
        # Counted bytes of the first 1, 2, ... events (each with its comma), in C.
        ends = list(accumulate(map(add, self.lengths, repeat(1))))
        return bisect_right(ends, room)


@dataclass
class BatchBuilder:
    """Collects chunks into one batch of at most ``max_bytes`` counted bytes."""

    version: str
    max_bytes: int
    chunks: List[Chunk] = field(default_factory=list)
    count: int = 0
    size: int = 0
    full: bool = False

    def __post_init__(self) -> None:
        self.size = overhead(self.version)

    def add(self, chunk: Chunk) -> Optional[Chunk]:
        """Take as many leading events of ``chunk`` as fit; return the rest, if any.

        An empty batch always takes at least one event, so an event larger than
        ``max_bytes`` is sent alone rather than stuck for ever.
        """
        if self.full or not chunk.count:
            return chunk if chunk.count else None
        k = chunk.fitting(self.max_bytes - self.size)
        if k == 0 and self.count == 0:
            k = 1
        if k == 0:
            self.full = True
            return chunk
        taken, rest = chunk.split(k)
        self.chunks.append(taken)
        self.count += taken.count
        self.size += taken.counted_size
        if rest.count:
            self.full = True
            return rest
        if self.size >= self.max_bytes:
            self.full = True
        return None

    def body(self) -> bytes:
        """The batch body for the collector (the events are copied once)."""
        head, tail = _ends(self.version, self.count)
        parts: "List[bytes | memoryview]" = [head]
        for chunk in self.chunks:
            parts += (chunk.joined, b",")
        if self.chunks:
            parts.pop()
        parts.append(tail)
        return b"".join(parts)

    def events(self) -> List[bytes]:
        """Every event of the batch, in order."""
        out: List[bytes] = []
        for chunk in self.chunks:
            out.extend(chunk.events())
        return out


@dataclass
class Batch:
    """A batch cut from the spool, and the spool position just after it."""

    builder: BatchBuilder
    end: Position


class Assembler:
    """Cuts batches out of the spool, in order, from the last acknowledged position."""

    def __init__(self, spool: "Spool", version: str, max_bytes: int, max_wait: float) -> None:
        self.spool = spool
        self.version = version
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.cursor: Position = spool.ack_position

    @classmethod
    def from_config(cls, spool: "Spool", version: str, batch: BatchSection) -> "Assembler":
        """Batches of ``collector.version`` cut as ``batch.*`` says."""
        return cls(spool, version, batch.max_bytes, batch.max_wait)

    def next_batch(self, flushing: threading.Event, abandon: threading.Event) -> Optional[Batch]:
        """The next batch: full, ``max_wait`` old, or whatever is left while flushing.

        ``None`` when flushing and the spool is empty, or when abandoning.
        """
        builder = BatchBuilder(self.version, self.max_bytes)
        deadline = 0.0
        while not abandon.is_set():
            record = self.spool.read(self.cursor)
            if record is None:
                if builder.count and (flushing.is_set() or time.monotonic() >= deadline):
                    return Batch(builder, self.cursor)
                if not builder.count and flushing.is_set():
                    return None
                if builder.count:
                    # Sleep until the batch could be full or is due, not per record.
                    wait = deadline - time.monotonic()
                    want = max(1, self.max_bytes - builder.size)
                else:
                    wait, want = 0.5, 1
                self.spool.wait(max(0.0, min(wait, 0.5)), self.cursor, want)
                continue
            taken = self.cursor.taken_in(record)
            chunk = record.rest(self.cursor)
            if not builder.count:
                # The batch waits at most max_wait from its first event's arrival
                # (clamped, so that a clock step cannot hold it longer).
                age = time.time() - record.time_ms / 1000
                deadline = time.monotonic() + max(0.0, min(self.max_wait, self.max_wait - age))
            rest = builder.add(chunk)
            if rest is not None:
                self.cursor = Position.inside(record, taken + chunk.count - rest.count)
                return Batch(builder, self.cursor)
            self.cursor = Position.after(record)
            if builder.full:
                return Batch(builder, self.cursor)
        return None

    def ready_batch(self, abandon: threading.Event) -> Optional[Batch]:
        """The next batch from what is spooled now, without waiting; ``None`` if nothing is."""
        return self.next_batch(_ALWAYS, abandon)

    def peek(self, position: Position) -> "tuple[Optional[bytes], Position]":
        """The spooled event at ``position`` (None if none yet) and the position after it.

        The cursor does not move: the event is cut into a batch again in its turn.
        """
        record = self.spool.read(position)
        if record is None:
            return None, position
        taken = position.taken_in(record)
        after = Position.after(record)
        if taken + 1 < record.chunk.count:
            after = Position.inside(record, taken + 1)
        if taken >= record.chunk.count:
            return None, after
        return record.rest(position).split(1)[0].events()[0], after


class Peeker:
    """The ``peek`` of :meth:`publisher.delivery.Deliverer.deliver`, over the spool.

    Each call hands out the next spooled event after ``start()`` (the end of the
    batches taken), without moving the assembler's cursor. At the end of what is
    spooled it starts again from ``start()``: an event peeked while the collector
    refused everything is peeked again, so a quiet stream still brings the
    evidence once the collector takes good events.
    """

    def __init__(self, assembler: Assembler, start: Callable[[], Position]) -> None:
        self.assembler = assembler
        self.start = start
        self.position: Optional[Position] = None  # None: at start()

    def __call__(self) -> Optional[bytes]:
        start = self.start()
        position = start if self.position is None else self.position
        restarted = False
        while True:
            event, after = self.assembler.peek(position)
            if event is not None:
                self.position = after
                return event
            if after != position:
                position = after  # past a record's last event: on to the next record
            elif restarted or position == start:
                self.position = None
                return None  # nothing spooled beyond the batches taken
            else:
                position, restarted = start, True


#: "Flushing" for :meth:`Assembler.ready_batch`: take what is there, wait for nothing.
_ALWAYS = threading.Event()
_ALWAYS.set()
