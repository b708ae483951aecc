"""The intake loop's stall: a spool it cannot write (a full disk) stops it, and is told.

While the spool takes nothing the intake loop holds what it took and retries
(see :meth:`publisher.daemon.Publisher._write`); this keeps when that began and
when to say so again.
"""
from __future__ import annotations

from typing import Optional

#: How often a stall that lasts is logged again.
SPOOL_STALL_LOG_INTERVAL = 60.0


class Stall:
    """Whether the intake loop is stopped by a spool it cannot write, and when to say so.

    The first failure is logged at once, then once every ``log_interval`` while
    it lasts, and the end of it once.
    """

    def __init__(self, log_interval: float = SPOOL_STALL_LOG_INTERVAL) -> None:
        self.log_interval = log_interval
        self.since: Optional[float] = None
        self._next_log = 0.0

    def failed(self, now: float) -> bool:
        """A write failed at ``now``; True when that should be logged."""
        if self.since is None:
            self.since = now
        if now >= self._next_log:
            self._next_log = now + self.log_interval
            return True
        return False

    def recovered(self, now: float) -> Optional[float]:
        """A write succeeded; how long the stall lasted, or None if there was none."""
        if self.since is None:
            return None
        lasted, self.since, self._next_log = now - self.since, None, 0.0
        return lasted
