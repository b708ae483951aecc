"""Delivery policy: what the publisher does with each answer from the collector.

- 2xx: delivered.
- 5xx, 408, 429, timeouts, refused or reset connections: retry the same
  batch with exponential backoff and jitter, honouring ``Retry-After``.
- 413: the body is too large; split the batch in halves and send each. A single
  event that still draws 413 can never be accepted and goes to the dead-letter file.
- 422 (and 400): the collector refused the content; bisect to isolate the
  refused events, deliver the rest, dead-letter the refused ones with the
  collector's reason.
- 401, 403 and any other 4xx: the events are fine, the publisher (or the
  collector) is misconfigured. Keep them, log loudly, back off, never drop.

Nothing here gives up on its own: a batch ends delivered or dead-lettered, or
``should_stop`` says the process is going away (the batch then stays in the
spool for the next start).
"""
from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import random
import threading
from typing import Callable, List, Optional, Sequence

from .batching import build_body
from .metrics import Metrics
from .sending import Answer

logger = logging.getLogger(__name__)

#: Answers that say "this content will never be accepted".
REFUSED = frozenset({400, 422})
#: Answers worth repeating as they are.
TRANSIENT = frozenset({408, 429})


class DeadLetters:
    """An append-only JSON-lines file of events the collector refused, with its reason."""

    def __init__(self, path: str, queue_name: str) -> None:
        self.path = path
        self.queue_name = queue_name
        self._lock = threading.Lock()

    def write(self, events: Sequence[bytes], status: int, reason: str) -> None:
        """Append one line per event and sync, so a refused event is never just gone."""
        when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        lines = []
        for event in events:
            record = {"time": when, "queue": self.queue_name, "status": status, "reason": reason}
            try:
                record["event"] = event.decode("utf-8")
            except UnicodeDecodeError:
                record["event_base64"] = base64.b64encode(event).decode("ascii")
            lines.append(json.dumps(record, ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)


class Backoff:
    """Exponential backoff with jitter: attempt n waits between half and all of initial·2ⁿ."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        retry_after_max: float,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.retry_after_max = retry_after_max
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self, retry_after: Optional[float] = None) -> float:
        if retry_after is not None:
            # Honour it, but never hammer a collector that says "0" over and over.
            delay = min(max(retry_after, 0.1), self.retry_after_max)
        else:
            ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 32)))
            delay = self._rng.uniform(ceiling / 2, ceiling)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Deliverer:
    """Delivers one batch whatever it takes; see the module docstring for the policy.

    :param post: sends a body holding a number of events and returns the :class:`Answer`.
    :param sleep: waits some seconds; returns True if the process is stopping
        (so the wait was cut short and the batch must stay in the spool).
    """

    def __init__(
        self,
        post: Callable[[bytes, int], Answer],
        version: str,
        metrics: Metrics,
        dead_letters: DeadLetters,
        backoff: Backoff,
        sleep: Callable[[float], bool],
    ) -> None:
        self.post = post
        self.version = version
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.backoff = backoff
        self.sleep = sleep
        self.failing_since: Optional[str] = None

    def deliver(self, body: bytes, count: int, events: Callable[[], List[bytes]]) -> bool:
        """Deliver a batch; True once every event is accepted or dead-lettered.

        ``events`` materialises the individual events, needed only to split.
        False means the process is stopping and the batch was not finished.
        """
        answer = self._until_decided(body, count)
        if answer is None:
            return False
        if answer.ok:
            return True
        # A refusal: fall back to working on the individual events.
        return self._split(events(), answer)

    def _split(self, events: List[bytes], answer: Answer) -> bool:
        status = answer.status or 0
        if len(events) == 1:
            logger.error(
                "collector refused an event with %d (%s); written to the dead-letter file %s",
                status,
                answer.reason,
                self.dead_letters.path,
            )
            self.dead_letters.write(events, status, answer.reason)
            self.metrics.incr("dead_letter")
            return True
        self.metrics.incr("split")
        logger.warning(
            "collector answered %d to a batch of %d events; splitting it in halves",
            status,
            len(events),
        )
        middle = len(events) // 2
        for half in (events[:middle], events[middle:]):
            half_answer = self._until_decided(build_body(self.version, half), len(half))
            if half_answer is None:
                return False
            if not half_answer.ok and not self._split(half, half_answer):
                return False
        return True

    def _until_decided(self, body: bytes, count: int) -> Optional[Answer]:
        """POST until the answer is success or a refusal; None if stopping."""
        while True:
            answer = self.post(body, count)
            if answer.ok:
                if self.failing_since is not None:
                    logger.info("collector is accepting events again (failing since %s)",
                                self.failing_since)
                    self.failing_since = None
                self.backoff.reset()
                return answer
            if answer.status in REFUSED or answer.status == 413:
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

    def _log_failure(self, answer: Answer, count: int, delay: float) -> None:
        status = answer.status
        if status in (401, 403):
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
