"""Damage in the spool: stretches of a segment that hold no whole record, and their ledger.

The start-up check (:mod:`publisher.spool.recovery`) and the sender's reads
(:mod:`publisher.spool.reader`) find them; the spool notes each in its
:class:`DamageLedger`, so that every reader jumps over it from then on, and
logs and counts the loss.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from publisher.spool.framing import Header

# The spool's logger (see publisher.spool.store): damage is the spool's to report.
logger = logging.getLogger("publisher.spool")


@dataclass(frozen=True)
class Damage:
    """A damaged stretch of a segment: from ``offset`` to ``resume``, the next whole record."""

    segment: int
    offset: int
    resume: int
    #: Events lost with it, when its header could be trusted for that; else 0.
    events: int

    @property
    def size(self) -> int:
        return self.resume - self.offset


def damage(segment: int, offset: int, resume: int, header: Optional[Header],
           delivered: int = 0) -> Damage:
    """The :class:`Damage` from ``offset`` to ``resume``.

    ``header`` is what its first bytes read as: if it spans the stretch exactly,
    the loss is that record's events (less ``delivered``, those before the ack
    position); otherwise it cannot be told.
    """
    whole = header is not None and offset + header.record_size == resume
    events = max(0, header.event_count - delivered) if header and whole else 0
    return Damage(segment, offset, resume, events)


class DamageLedger:
    """The damaged stretches found so far, by (segment, offset), and the loss they cost.

    It holds no lock: the spool calls :meth:`add`, :meth:`get` and :meth:`past`
    under its own, and :meth:`report` outside it.
    """

    def __init__(self) -> None:
        self._resume: Dict[Tuple[int, int], int] = {}
        #: Events and bytes of damaged records skipped.
        self.events = self.bytes = 0

    def add(self, stretch: Damage) -> None:
        """Note ``stretch``: readers jump over it from now on."""
        self._resume[(stretch.segment, stretch.offset)] = stretch.resume
        self.events += stretch.events
        self.bytes += stretch.size

    def get(self, segment: int, offset: int) -> Optional[int]:
        """Where a stretch starting at (segment, offset) ends; ``None`` if none does."""
        return self._resume.get((segment, offset))

    def past(self, segment: int, offset: int) -> int:
        """``offset``, or past every damaged stretch that follows from it."""
        while (segment, offset) in self._resume:
            offset = self._resume[(segment, offset)]
        return offset

    def report(self, stretch: Damage, path: str) -> None:
        """Log the loss of ``stretch``, in the segment file ``path``."""
        logger.error(
            "spool: skipped %d damaged bytes at offset %d of %s (%s); resumed at the next "
            "whole record", stretch.size, stretch.offset, path,
            f"a record of {stretch.events} events, lost" if stretch.events
            else "a record of unknown size, lost",
        )
