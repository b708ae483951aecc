"""A chunk: consecutive spooled events, comma-joined, with each event's length.

Events travel through the publisher as chunks: the events taken off the queue
in one wake-up, as the spool stores them in one record. The spool hands them
out, and a batch body is one ``join`` over chunks, not one operation per event.
"""
from __future__ import annotations

import array
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add
from typing import List, Tuple


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
