"""Batch bodies: v1 ``[e1,e2]``, v2 ``{"1":{"lst":["rec",N,e1,e2]}}``, 2j ``[e1,e2]``.

Events travel through the publisher as *chunks*: the events taken off the
queue in one wake-up, joined with commas, plus their lengths. A batch body is
then one ``join`` over chunks, not one operation per event. Sizes are counted
as baseplate.py counts them (the format's overhead plus each event and its
comma), so a batch never holds more than ``max_bytes``; an event is never split
or reordered. A single event larger than ``max_bytes`` travels alone.

:class:`publisher.send.assembler.Assembler` cuts the batches out of the spool.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from publisher.spool.chunk import Chunk
from publisher.spool.framing import join_events

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
