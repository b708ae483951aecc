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

A refused batch is bisected (:mod:`publisher.send.bisection` says in which
order, and how the evidence is searched for); until there is evidence, a
single refused event is *held*, not dead-lettered.

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
from typing import Callable, List, Optional

from publisher.send.backoff import Backoff
from publisher.send.batches import BatchBuilder, build_body
from publisher.send.bisection import Bisection, Part
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
            return self._bisect(Part(events(), body=body), answer, more, peek)
        except _Stopping:
            return False

    def _bisect(
        self,
        first: Part,
        answer: Answer,
        more: Optional[Callable[[], Optional[BatchBuilder]]],
        peek: Optional[Callable[[], Optional[bytes]]],
    ) -> bool:
        search = Bisection(self._proven, more, self.wait_for_evidence)
        search.wait = self._refused(first, answer, search)
        while not search.done:
            part = search.next_part()
            if part is None:
                self.gave_up = answer
                return False
            if search.wait:
                delay = self.backoff.next_delay()
                self.metrics.incr("retry")
                self._log_unproven(answer, len(part.events), search.held_events(), delay)
                if self.sleep(delay):
                    return False
                if search.probed and peek is not None and not self._peek(peek):
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
                search.wait = self._refused(part, answer, search)
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

    def _proven(self, part: Part) -> bool:
        """Has the collector accepted anything since it first refused ``part``?"""
        return part.refused_at is not None and self.accepted > part.refused_at

    def _refused(self, part: Part, answer: Answer, search: Bisection) -> bool:
        """File a refused part: split it, dead-letter it or hold it.

        Returns whether the next POST must wait a backoff (no evidence yet, and
        an event is already held).
        """
        status = answer.status or 0
        count = len(part.events)
        if status == 413 and count > 1:
            # Too large, not refused: the halves may well be taken.
            self._split(part, answer, search)
            return False
        if part.refused_at is None:
            part.refused_at = self.accepted
        proven = self._proven(part)
        if count > 1:
            self._split(part, answer, search)
        elif proven:
            self._dead_letter(part.events, status, answer.reason)
        else:
            search.held.append(part)
            self.metrics.incr("held")
        return not proven and bool(search.held)

    def _split(self, part: Part, answer: Answer, search: Bisection) -> None:
        self.metrics.incr("split")
        logger.warning(
            "collector answered %d to a batch of %d events; splitting it in halves",
            answer.status or 0,
            len(part.events),
        )
        search.work.extendleft(reversed(part.halves()))

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
