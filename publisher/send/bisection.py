"""Bisection: the search of a refused batch for the events the collector refuses.

A :class:`Bisection` holds the parts still to send and the refused single
events *held* for want of evidence, and chooses the next part to send:
held events once there is evidence, then the rest of the batch, then one
probe batch, then the halves in order, depth first. The policy behind it,
and what is done with each answer, is :mod:`publisher.send.delivery`'s.

Bisection goes depth first, left half first. Until there is evidence, a
single refused event is *held*, not dead-lettered, and the search for evidence
goes on, cheapest first:

1. the rest of the batch, sent at once as one part (a bad first event among
   good ones costs no more than that POST, and the order is kept);
2. refused too, the next batch in the spool, when one is ready, sent at once
   as a *probe* (a batch of bad events followed by good ones);
3. refused too, or none ready: the bisection goes on, and each refusal now
   waits a backoff, as an outage does, and is logged as an error. When only
   held events are left they are retried together after a backoff, and a
   probe is looked for again until one is taken;
4. once the probe was refused too, after each backoff the next event beyond
   it is sent alone (a *peek*, each time the next one): a long run of bad
   events does not hold back the good ones behind it for ever, and memory
   stays bounded. At the end of what is spooled, peeking starts again after
   the probe: good events peeked while the collector refused everything are
   peeked again, so on a quiet stream the evidence still comes once the
   collector is fixed (with no good event spooled, it comes with the next
   one to arrive). A peeked event the collector accepts is sent again in its
   own batch later (at least once).

A blanket refusal of n events thus costs about log2(n) + 2 POSTs at once and
then one or two POSTs per backoff, where bisecting blindly costs 2n POSTs at
once. A lone bad event on a quiet stream waits, backing off, until later
events arrive and are accepted; then it is set aside. At most one probe is taken, so at most
two batches are in memory.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, List, Optional

from publisher.send.batches import BatchBuilder


@dataclass
class Part:
    """Events of a batch being bisected, and the accepted POSTs counted at their first refusal."""

    events: List[bytes]
    refused_at: Optional[int] = None
    body: Optional[bytes] = None  # the batch's own body, before any split

    def halves(self) -> "List[Part]":
        middle = len(self.events) // 2
        return [Part(self.events[:middle], self.refused_at),
                Part(self.events[middle:], self.refused_at)]


def together(parts: List[Part]) -> Part:
    """Parts as one, to send them with one POST."""
    events = [event for part in parts for event in part.events]
    refused = [p.refused_at for p in parts if p.refused_at is not None]
    return Part(events, min(refused) if refused else None)


class Bisection:
    """The parts of one refused batch still to send, and the order to send them in.

    :param proven: whether the collector accepted anything since it first
        refused a part (the evidence that the part itself is refused).
    :param more: hands out the next batch, if one is ready, to probe with.
    :param wait_for_evidence: when only held events are left, False gives up
        (:meth:`next_part` returns ``None``) instead of retrying them after a backoff.
    """

    def __init__(self, proven: Callable[[Part], bool],
                 more: Optional[Callable[[], Optional[BatchBuilder]]],
                 wait_for_evidence: bool = True) -> None:
        self._proven = proven
        self._more = more
        self._wait_for_evidence = wait_for_evidence
        #: Parts still to send, in order (the left half first).
        self.work: Deque[Part] = deque()
        #: Refused single events waiting for evidence.
        self.held: List[Part] = []
        #: Whether the next POST must wait a backoff first (set by the caller
        #: after a refusal, cleared when evidence may come at once).
        self.wait = False
        #: The rest of the batch was sent at once as one part.
        self.searched = False
        #: The next batch was taken and sent as a probe.
        self.probed = False

    @property
    def done(self) -> bool:
        """Nothing left to send: every event was accepted or dead-lettered."""
        return not (self.work or self.held)

    def held_events(self) -> int:
        return sum(len(p.events) for p in self.held)

    def next_part(self) -> Optional[Part]:
        """The next part to send, with :attr:`wait` saying whether to back off first.

        ``None``: only held events are left and evidence is not waited for.
        """
        if self.held and all(self._proven(p) for p in self.held):
            # The collector took something since: it is not the collector. Retry
            # the held events together; refused again, they are dead-lettered.
            self.wait = False
            return self._take_held()
        if self.wait and not self.searched and self.work:
            # The first held event: the rest of the batch, sent at once as one
            # part, is the likeliest evidence (and keeps the events in order).
            self.searched, self.wait = True, False
            part = together(list(self.work))
            self.work.clear()
            return part
        if self.wait and not self.probed:
            # Still no evidence: the next batch may bring it. Sent at once, as
            # a batch of its own would be.
            probe = self._probe()
            if probe is not None:
                self.probed, self.wait = True, False
                return probe
        if self.work:
            return self.work.popleft()
        if not self._wait_for_evidence:
            return None
        # Only held events, and no other: retry them after a backoff.
        self.wait = True
        return self._take_held()

    def _take_held(self) -> Part:
        part = together(self.held)
        self.held.clear()
        return part

    def _probe(self) -> Optional[Part]:
        """The next batch, if one is ready."""
        batch = self._more() if self._more is not None else None
        if batch is None:
            return None
        return Part(batch.events(), body=batch.body())
