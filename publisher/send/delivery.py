"""Delivery policy: what the publisher does with each answer from the collector.

Answers come in four kinds:

- 2xx: delivered.
- An outage: no answer (timeout, refused or reset connection), 502, 503, 504,
  408 or 429. The same batch is retried with exponential backoff and jitter,
  honouring ``Retry-After``, for as long as it takes. An outage never
  dead-letters anything.
- A misconfiguration: 401, 403 and any other 4xx not named here. The events are
  fine: keep them, log loudly, back off, never drop.
- A refusal of the content: 400, 422, 413 for a single event, and 500 (or any
  other 5xx) drawn ``retry.bisect_after_5xx`` times in a row by the same body:
  an event the collector cannot decode or store can make it fail. The batch is
  bisected to find the refused events. Once the collector has accepted other
  parts of the batch, a part of several events is split at its first 500 (the
  collector has shown it works), while a single event still gets
  ``retry.bisect_after_5xx`` tries before it is set aside. A 413 for several
  events only says "too large", so that batch is split in halves without
  further ado.

The evidence rule
-----------------
A refusal may come from the events or from the collector: nginx answering 400
to everything on the wrong port, a collector whose database is down answering
500 to everything. So an event is dead-lettered only on evidence that the
collector is otherwise healthy: it refused the event on its own, and it has
accepted other events since it first refused it. The evidence is counted in
accepted POSTs (:attr:`Deliverer.accepted`); each part of a batch remembers the
count at its first refusal.

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
once. A
lone bad event on a quiet stream waits, backing off, until later events arrive
and are accepted; then it is set aside. At most one probe is taken, so at most
two batches are in memory.

As soon as something is accepted, the held events are retried at once, together
(a collector that just came back takes them all); refused again, they are
bisected, now with evidence, and dead-lettered. One bad event among good ones
is thus isolated as before, while a blanket refusal dead-letters nothing and is
delivered once the collector is fixed.

Order and loss
--------------
:meth:`Deliverer.deliver` returns True only when every event of the batch (and
of its probe) was accepted or dead-lettered; only then does the sender move the
spool's ack position past them. A process that stops (or is killed) before
that sends them again on its next start: at least once, never lost. A
dead-letter file that cannot be written (a full disk) holds the batch too: the
write is retried after a backoff. Events keep their spool order, with two
exceptions: a held event that the collector takes when retried arrives after
the events that proved the collector healthy, and a peeked event arrives early
(and again in its turn).
"""
from __future__ import annotations

import datetime
import logging
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, List, Optional

from publisher.send.backoff import Backoff
from publisher.send.batches import BatchBuilder, build_body
from publisher.send.dead_letters import DeadLetters
from publisher.metrics.counters import Metrics
from publisher.send.post import Answer
from publisher.config.sections import PublisherConfig
from publisher.send.throttle import Throttle

__all__ = ["Backoff", "DeadLetters", "Deliverer"]

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.delivery")

#: Answers that say "this content will never be accepted".
REFUSED = frozenset({400, 422})
#: Answers worth repeating as they are.
TRANSIENT = frozenset({408, 429})
#: Server errors that mean "not now" (a proxy without its backend, an overload):
#: retried for ever, never taken for a refusal of the content.
OUTAGE_5XX = frozenset({502, 503, 504})


class _Stopping(Exception):
    """The process is stopping while a refused event waits for the dead-letter file."""


@dataclass
class _Part:
    """Events of a batch being bisected, and :attr:`Deliverer.accepted` at their first refusal."""

    events: List[bytes]
    refused_at: Optional[int] = None
    body: Optional[bytes] = None  # the batch's own body, before any split

    def halves(self) -> "List[_Part]":
        middle = len(self.events) // 2
        return [_Part(self.events[:middle], self.refused_at),
                _Part(self.events[middle:], self.refused_at)]


def _together(parts: List[_Part]) -> _Part:
    """Parts as one, to send them with one POST."""
    events = [event for part in parts for event in part.events]
    refused = [p.refused_at for p in parts if p.refused_at is not None]
    return _Part(events, min(refused) if refused else None)


class Deliverer:
    """Delivers one batch whatever it takes; see the module docstring for the policy.

    :param post: sends a body holding a number of events and returns the :class:`Answer`.
    :param sleep: waits some seconds; returns True if the process is stopping
        (so the wait was cut short and the batch must stay in the spool).
    :param bisect_after_5xx: answers of 500 (or another 5xx but 502-504) in a
        row after which a body counts as refused (``retry.bisect_after_5xx``).
    :param wait_for_evidence: when only unproven refused events are left and no
        probe is at hand, False gives up (``deliver`` returns False and
        :attr:`gave_up` is set) instead of backing off and retrying them: the
        dead-letter replay stops there rather than wait for ever.
    """

    def __init__(
        self,
        post: Callable[[bytes, int], Answer],
        version: str,
        metrics: Metrics,
        dead_letters: DeadLetters,
        backoff: Backoff,
        sleep: Callable[[float], bool],
        bisect_after_5xx: int = 3,
        wait_for_evidence: bool = True,
    ) -> None:
        self.post = post
        self.version = version
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.backoff = backoff
        self.sleep = sleep
        self.bisect_after_5xx = bisect_after_5xx
        self.wait_for_evidence = wait_for_evidence
        self.failing_since: Optional[str] = None
        #: POSTs the collector accepted so far: the evidence that it is healthy.
        self.accepted = 0
        #: The refusal :meth:`deliver` gave up on (``wait_for_evidence=False``).
        self.gave_up: Optional[Answer] = None
        #: Failed POSTs in a row for the oldest unsent batch (0 once one is accepted).
        self.failed_tries = 0
        self._kept_lines = Throttle()

    @classmethod
    def from_config(cls, cfg: PublisherConfig, post: Callable[[bytes, int], Answer],
                    metrics: Metrics, sleep: Callable[[float], bool],
                    wait_for_evidence: bool = True) -> "Deliverer":
        """The delivery policy of ``retry.*`` and ``dead_letter.*`` for ``collector.version``."""
        return cls(post, cfg.collector.version, metrics,
                   DeadLetters.from_config(cfg.dead_letter, cfg.queue_name),
                   Backoff.from_config(cfg.retry), sleep, cfg.retry.bisect_after_5xx,
                   wait_for_evidence=wait_for_evidence)

    def deliver(
        self,
        body: bytes,
        count: int,
        events: Callable[[], List[bytes]],
        more: Optional[Callable[[], Optional[BatchBuilder]]] = None,
        peek: Optional[Callable[[], Optional[bytes]]] = None,
    ) -> bool:
        """Deliver a batch; True once every event is accepted or dead-lettered.

        ``events`` materialises the individual events, needed only to split.
        ``more`` hands out the next batch, if one is ready, to probe the
        collector with while refused events wait for evidence; a batch taken
        is the caller's to acknowledge with this one. ``peek`` hands out the
        next event after those (each call the next one, and after the last
        one spooled the first again; see :class:`publisher.send.assembler.Peeker`),
        if any, to probe with once that batch was refused too; it stays the
        caller's to send. False means the process
        is stopping (or, with ``wait_for_evidence=False``, gave up) and the
        batch was not finished.
        """
        answer = self._until_decided(body, count)
        if answer is None:
            return False
        if answer.ok:
            return True
        # A refusal: fall back to working on the individual events.
        try:
            return self._bisect(_Part(events(), body=body), answer, more, peek)
        except _Stopping:
            return False

    def _bisect(
        self,
        first: _Part,
        answer: Answer,
        more: Optional[Callable[[], Optional[BatchBuilder]]],
        peek: Optional[Callable[[], Optional[bytes]]],
    ) -> bool:
        work: Deque[_Part] = deque()
        held: List[_Part] = []
        searched = probed = False
        wait = self._refused(first, answer, work, held)
        while work or held:
            probe: Optional[_Part] = None
            if held and all(self._proven(p) for p in held):
                # The collector took something since: it is not the collector. Retry
                # the held events together; refused again, they are dead-lettered.
                part, wait = _together(held), False
                held.clear()
            elif wait and not searched and work:
                # The first held event: the rest of the batch, sent at once as one
                # part, is the likeliest evidence (and keeps the events in order).
                searched, wait = True, False
                part = _together(list(work))
                work.clear()
            elif wait and not probed and (probe := self._probe(more)) is not None:
                # Still no evidence: the next batch may bring it. Sent at once, as
                # a batch of its own would be.
                part, probed, wait = probe, True, False
            elif work:
                part = work.popleft()
            elif not self.wait_for_evidence:
                self.gave_up = answer
                return False
            else:
                # Only held events, and no other: retry them after a backoff.
                part, wait = _together(held), True
                held.clear()
            if wait:
                delay = self.backoff.next_delay()
                self.metrics.incr("retry")
                self._log_unproven(answer, len(part.events), sum(len(p.events) for p in held),
                                   delay)
                if self.sleep(delay):
                    return False
                if probed and peek is not None and not self._peek(peek):
                    return False
            # Once the collector took other parts since this one was refused, a 500
            # is this part's doing: split at once, and try only a single event
            # bisect_after_5xx times before setting it aside.
            split_fast = self._proven(part) and len(part.events) > 1
            decided = self._until_decided(
                part.body or build_body(self.version, part.events),
                len(part.events),
                1 if split_fast else self.bisect_after_5xx,
            )
            if decided is None:
                return False
            if not decided.ok:
                answer = decided
                wait = self._refused(part, answer, work, held)
        return True

    def _peek(self, peek: Callable[[], Optional[bytes]]) -> bool:
        """Send the next event beyond the probe, once: accepted, it is the evidence.

        It is sent again in its own batch later (at least once); refused, it is
        left for then. False if stopping.
        """
        event = peek()
        if event is not None:
            if self._until_decided(build_body(self.version, [event]), 1) is None:
                return False
        return True

    def _proven(self, part: _Part) -> bool:
        """Has the collector accepted anything since it first refused ``part``?"""
        return part.refused_at is not None and self.accepted > part.refused_at

    @staticmethod
    def _probe(more: Optional[Callable[[], Optional[BatchBuilder]]]) -> Optional[_Part]:
        """The next batch, if one is ready."""
        batch = more() if more is not None else None
        if batch is None:
            return None
        return _Part(batch.events(), body=batch.body())

    def _refused(self, part: _Part, answer: Answer, work: Deque[_Part], held: List[_Part]) -> bool:
        """File a refused part: split it, dead-letter it or hold it.

        Returns whether the next POST must wait a backoff (no evidence yet, and
        an event is already held).
        """
        status = answer.status or 0
        count = len(part.events)
        if status == 413 and count > 1:
            # Too large, not refused: the halves may well be taken.
            self._split(part, answer, work)
            return False
        if part.refused_at is None:
            part.refused_at = self.accepted
        proven = self._proven(part)
        if count > 1:
            self._split(part, answer, work)
        elif proven:
            self._dead_letter(part.events, status, answer.reason)
        else:
            held.append(part)
            self.metrics.incr("held")
        return not proven and bool(held)

    def _split(self, part: _Part, answer: Answer, work: Deque[_Part]) -> None:
        self.metrics.incr("split")
        logger.warning(
            "collector answered %d to a batch of %d events; splitting it in halves",
            answer.status or 0,
            len(part.events),
        )
        work.extendleft(reversed(part.halves()))

    def _dead_letter(self, events: List[bytes], status: int, reason: str) -> None:
        logger.error(
            "collector refused an event with %d (%s) and accepted others since; "
            "written to the dead-letter file %s",
            status,
            reason,
            self.dead_letters.path,
        )
        while True:
            try:
                dropped = self.dead_letters.write(events, status, reason)
                break
            except OSError as exc:
                # A full disk, say: the event stays in the spool (the batch is not
                # acknowledged) until the file takes it.
                delay = self.backoff.next_delay()
                logger.error("cannot write the dead-letter file %s (%s); keeping the event, "
                             "retrying in %.1fs", self.dead_letters.path, exc, delay)
                if self.sleep(delay):
                    raise _Stopping() from None
        self.metrics.incr("dead_letter", len(events) - dropped)
        if dropped:
            self.metrics.incr("dead_letter.dropped", dropped)
            logger.error(
                "dead-letter file %s is full (dead_letter.max_bytes=%d): DROPPED %d refused "
                "events; replay or archive the file to make room",
                self.dead_letters.path,
                self.dead_letters.max_bytes,
                dropped,
            )

    def _until_decided(
        self, body: bytes, count: int, server_errors_max: Optional[int] = None
    ) -> Optional[Answer]:
        """POST until the answer is success or a refusal; None if stopping.

        ``server_errors_max`` 500s in a row (default ``bisect_after_5xx``) are a refusal.
        """
        if server_errors_max is None:
            server_errors_max = self.bisect_after_5xx
        server_errors = 0
        while True:
            answer = self.post(body, count)
            if answer.ok:
                self.failed_tries = 0
                self.accepted += 1
                if self.failing_since is not None:
                    logger.info("collector is accepting events again (failing since %s)",
                                self.failing_since)
                    self.failing_since = None
                self.backoff.reset()
                return answer
            self.failed_tries += 1
            status = answer.status
            if status in REFUSED or status == 413:
                return answer
            if status is None or status < 500 or status in OUTAGE_5XX:
                server_errors = 0  # an outage in between: the 500s may be the collector's too
            else:
                server_errors += 1
                if server_errors >= server_errors_max:
                    logger.warning(
                        "collector answered %d to the same %d events %d times in a row "
                        "(retry.bisect_after_5xx); taking it for a refusal of their content",
                        status,
                        count,
                        server_errors,
                    )
                    return answer
            delay = self.backoff.next_delay(answer.retry_after)
            self.metrics.incr("retry")
            if self.failing_since is None:
                self.failing_since = datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                )
            self._log_failure(answer, count, delay)
            if self.sleep(delay):
                return None

    def _log_unproven(self, answer: Answer, count: int, others: int, delay: float) -> None:
        self.metrics.incr("refused_unproven")
        logger.error(
            "collector REFUSED EVENTS (%d: %s) and has accepted nothing since: it may be the "
            "collector, not the events, so none is dead-lettered; keeping them in the spool; "
            "next try: %d events in %.1fs (%d more held)",
            answer.status or 0,
            answer.reason,
            count,
            delay,
            others,
        )

    def _log_failure(self, answer: Answer, count: int, delay: float) -> None:
        status = answer.status
        if answer.kept is not None:
            # A redirect or a 2xx that stored nothing comes back at every retry: once a minute.
            kind = "redirect" if status is not None and 300 <= status < 400 else "answer"
            quiet = self._kept_lines.due(kind)
            if quiet is not None:
                logger.error(
                    "%s; keeping %d events, retrying in %.1fs%s",
                    answer.kept,
                    count,
                    delay,
                    f"; {quiet} more such answers in the last minute" if quiet else "",
                )
        elif status in (401, 403):
            self.metrics.incr("auth_failure")
            logger.error(
                "collector REFUSED OUR CREDENTIALS (%d: %s): check key.name and key.secret; "
                "keeping %d events, retrying in %.1fs",
                status,
                answer.reason,
                count,
                delay,
            )
        elif status is not None and status < 500 and status not in TRANSIENT:
            logger.error(
                "collector answered %d (%s); keeping %d events, retrying in %.1fs",
                status,
                answer.reason,
                count,
                delay,
            )
        else:
            what = f"answered {status}" if status is not None else "unreachable"
            logger.warning(
                "collector %s (%s); keeping %d events, retrying in %.1fs",
                what,
                answer.reason,
                count,
                delay,
            )
