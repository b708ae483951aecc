"""Once a minute: how the publisher logs an answer that repeats with every retry."""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional

#: Seconds between two log lines about the same thing.
INTERVAL = 60.0


class Throttle:
    """Says when a repeating thing is due to be logged again: at most once per ``interval``.

    Each kind of thing (a key) has its own clock; :meth:`due` also says how many
    times the thing happened unlogged since its last line.
    """

    def __init__(self, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next: Dict[str, float] = {}
        self._quiet: Dict[str, int] = {}

    def due(self, key: str) -> Optional[int]:
        """None while ``key`` was logged less than ``interval`` ago; else the times it
        happened meanwhile (0 the first time), and its clock starts again."""
        now = self._clock()
        with self._lock:
            if now < self._next.get(key, now):
                self._quiet[key] = self._quiet.get(key, 0) + 1
                return None
            self._next[key] = now + self.interval
            return self._quiet.pop(key, 0)
