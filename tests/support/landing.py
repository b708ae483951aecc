"""Test helper for the landing zone: take what is waiting on a queue, never waiting."""
from __future__ import annotations

from publisher.intake.landing import Landing


def receive(landing: Landing, mqd: int, limit: int) -> int:
    """Take up to ``limit`` waiting messages into ``landing`` (never waiting); return how many."""
    before = landing.count
    landing.fill(mqd, limit, -1, 0.0, 0.0, len(landing.buf))
    return landing.count - before
