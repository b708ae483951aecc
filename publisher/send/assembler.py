"""Cutting batches out of the spool for the sender thread, and peeking past them.

:class:`Assembler` reads the spool in order from the last acknowledged
position and fills a :class:`publisher.send.batches.BatchBuilder` until it is
full or due; :class:`Peeker` hands out spooled events beyond the batches taken.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from publisher.config.sections import BatchSection
from publisher.send.batches import BatchBuilder
from publisher.spool.format import Position
from publisher.spool.store import Spool


@dataclass
class Batch:
    """A batch cut from the spool, and the spool position just after it."""

    builder: BatchBuilder
    end: Position


class Assembler:
    """Cuts batches out of the spool, in order, from the last acknowledged position."""

    def __init__(self, spool: Spool, version: str, max_bytes: int, max_wait: float) -> None:
        self.spool = spool
        self.version = version
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.cursor: Position = spool.ack_position

    @classmethod
    def from_config(cls, spool: Spool, version: str, batch: BatchSection) -> "Assembler":
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
    """The ``peek`` of :meth:`publisher.send.delivery.Deliverer.deliver`, over the spool.

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
