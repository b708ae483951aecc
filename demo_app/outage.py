"""``python -m demo_app --outage SECONDS``: take the collector down in the middle of the burst.

The publishers keep draining the queues into their disk spools while the
collector is away and replay them when it is back, so the apps never see a
full queue and the summary still ends with every event delivered.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class Outage:
    """After ``after`` seconds call ``stop``; ``duration`` seconds later call ``start``.

    Runs in a background thread; :meth:`wait` joins it and re-raises what
    ``stop`` or ``start`` raised, :meth:`cancel` abandons it (Ctrl-C).
    """

    def __init__(
        self, after: float, duration: float, stop: Callable[[], object], start: Callable[[], object]
    ) -> None:
        self.after = after
        self.duration = duration
        self._stop = stop
        self._start = start
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outage", daemon=True)
        self.error: Optional[BaseException] = None
        #: monotonic times at which the collector went down and came back
        self.down_at: Optional[float] = None
        self.up_at: Optional[float] = None

    def begin(self) -> "Outage":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            if self._cancelled.wait(self.after):
                return
            self._stop()
            self.down_at = time.monotonic()
            if self._cancelled.wait(self.duration):
                return
            self._start()
            self.up_at = time.monotonic()
        except BaseException as exc:  # handed to the main thread by wait()
            self.error = exc

    def wait(self) -> None:
        """Block until the collector is back; re-raise a failure to stop or start it."""
        self._thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self._cancelled.set()
        if self._thread.is_alive():
            self._thread.join()
