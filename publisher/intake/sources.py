"""Where the intake loop takes events from: the landing zone, or memory.

Each wake-up of the intake loop asks its source to :meth:`~LandingIntake.take`
what the queue holds, and to :meth:`~LandingIntake.spool` what it holds:

- :class:`LandingIntake` receives into the landing zone, so that events taken
  off the queue survive a ``kill -9`` until they are spooled;
- :class:`MemoryIntake` receives into a list, spooled every wake-up (the
  landing zone is off, or could not be opened).
"""
from __future__ import annotations

import logging
import select
from typing import Callable, List

from baseplate_events.mqueue.posix import MessageQueue

from publisher.intake.landing import Landing
from publisher.metrics.counters import Metrics
from publisher.spool.framing import unpack_lengths

# The intake loop's logger (see publisher.daemon).
logger = logging.getLogger("publisher.loop")

#: Longest an event waits in the landing zone before it is spooled.
LANDING_LINGER = 0.02
#: Landing bytes spooled as one record: a quarter of a default batch, so that a
#: batch takes whole records and splits at most its last one.
RECORD_BYTES = 128 << 10

#: Spools events taken off the queue (``landed``: out of the landing zone);
#: False while the spool cannot take them.
Store = Callable[[List[bytes], bool], bool]
#: Runs one spool append for ``count`` events (``landed`` as above); False as above.
Write = Callable[[Callable[[], None], int, bool], bool]
#: The spool's append of events joined with commas, and their lengths.
AppendJoined = Callable[[bytes, bytes], None]


class LandingIntake:
    """Takes events into the landing zone; spools them together, one record per few hundred.

    One call (in C, with the GIL released) takes and waits until
    :data:`RECORD_BYTES`, ``drain.max_messages`` or :data:`LANDING_LINGER`
    after the first event: one spool write and one CRC per few hundred events.
    """

    def __init__(self, landing: Landing, queue_fd: int, wake_fd: int, limit: int,
                 append_joined: AppendJoined, store: Store, write: Write,
                 metrics: Metrics) -> None:
        self.landing = landing
        self._append_joined = append_joined
        self._queue_fd = queue_fd
        self._wake_fd = wake_fd
        self._limit = limit
        self._store = store
        self._write = write
        self.metrics = metrics

    def take(self, timeout: float) -> bool:
        """Take what the queue holds, waiting up to ``timeout``; True if woken instead."""
        return self.landing.fill(self._queue_fd, self._limit, self._wake_fd, timeout,
                                 LANDING_LINGER, RECORD_BYTES)

    def holding(self) -> int:
        """Events taken and not yet spooled."""
        return self.landing.count

    def spool(self) -> bool:
        """Spool the landing zone's events and clear it; False while the spool cannot."""
        landing = self.landing
        gathered = landing.gather()
        if gathered.stop != landing.end:
            # Another process wrote to the ring file: what follows the damage
            # cannot be told from garbage. Spool what came before, count the rest.
            lost = landing.count - gathered.event_count
            logger.error(
                "landing: the ring file %s was overwritten at offset %d (by another process?); "
                "spooled the %d events before it, lost %d", landing.path, gathered.stop,
                gathered.event_count, lost,
            )
            self.metrics.incr("dropped.landing_damaged", lost)
            if not gathered.event_count:
                landing.clear()
                return True
        if unpack_lengths(gathered.lengths).count(0):
            stored = self._store(landing.events()[: gathered.event_count], True)
        else:
            stored = self._write(
                lambda: self._append_joined(gathered.joined, gathered.lengths),
                gathered.event_count, True)
        if stored:
            landing.clear()
        return stored

    def close(self) -> None:
        self.landing.close()


class MemoryIntake:
    """Takes events into memory: they are only there, so every wake-up spools them."""

    def __init__(self, queue: MessageQueue, wake_fd: int, limit: int, store: Store) -> None:
        self._queue_fd = queue.fileno()
        self._get_many = queue.get_many
        self._wake_fd = wake_fd
        self._limit = min(limit, queue.max_messages)
        self._store = store
        self.held: List[bytes] = []

    def take(self, timeout: float) -> bool:
        """Take what the queue holds, waiting up to ``timeout``; True if woken instead."""
        ready, _, _ = select.select([self._queue_fd, self._wake_fd], [], [], timeout)
        if self._wake_fd in ready:
            return True
        if ready:
            self.held.extend(self._get_many(self._limit))
        return False

    def holding(self) -> int:
        """Events taken and not yet spooled."""
        return len(self.held)

    def spool(self) -> bool:
        """Spool the events taken; False while the spool cannot."""
        if self._store(self.held, False):
            self.held.clear()
            return True
        return False

    def close(self) -> None:
        pass
