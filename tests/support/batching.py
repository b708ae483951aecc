"""Test helpers for batches: a chunk from a list of events, and a reference batch splitter."""
from __future__ import annotations

from typing import List, Sequence

from publisher.send.batches import overhead
from publisher.spool.chunk import Chunk
from publisher.spool.framing import join_events


def chunk_of(events: Sequence[bytes]) -> Chunk:
    """``events`` as one chunk, as a spool record holds them."""
    return Chunk(*join_events(events))


def batches_of(version: str, max_bytes: int, events: Sequence[bytes]) -> List[List[bytes]]:
    """Cut ``events`` into consecutive batches that each fit ``max_bytes`` (a reference model)."""
    out: List[List[bytes]] = []
    current: List[bytes] = []
    size = overhead(version)
    for event in events:
        if current and size + len(event) + 1 > max_bytes:
            out.append(current)
            current, size = [], overhead(version)
        current.append(event)
        size += len(event) + 1
    if current:
        out.append(current)
    return out
