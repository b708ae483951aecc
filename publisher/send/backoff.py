"""Backoff between retries: how long the sender waits before it tries the collector again."""
from __future__ import annotations

import random
from typing import Optional

from publisher.config.sections import RetrySection


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

    @classmethod
    def from_config(cls, retry: RetrySection) -> "Backoff":
        """The backoff of ``retry.*``."""
        return cls(retry.backoff_initial, retry.backoff_max, retry.retry_after_max)

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
