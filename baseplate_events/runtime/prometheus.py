"""Prometheus: the apps' loss counters, with ``events.prometheus`` / ``EVENTS_PROMETHEUS``.

Two counters on prometheus_client's default registry, so that whatever serves
the app's ``/metrics`` (``prometheus_client.make_wsgi_app()``, or a
``MultiProcessCollector`` under gunicorn) shows them beside the app's own:

- ``baseplate_events_put_failed_total{queue, error}``: puts that failed, by
  error class, under either error policy (statsd: ``put.failed.<Error>``);
- ``baseplate_events_put_discarded_total{queue}``: held events dropped because
  their request failed, in transactional mode (statsd: ``put.discarded``).

Under gunicorn or any server that forks workers, set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory before the server starts, as prometheus_client documents:
each worker (and a ``--preload`` master) then counts in its own file there, and
a ``MultiProcessCollector`` sums the files. Both metrics are counters, so no
gauge mode and no ``mark_process_dead`` are needed.
"""
from __future__ import annotations

import threading
from typing import Optional, Tuple

from prometheus_client import Counter

__all__ = ["LossCounters"]

_FAILED = "put.failed."
_DISCARDED = "put.discarded"

_lock = threading.Lock()
_counters: Optional[Tuple[Counter, Counter]] = None


def _shared_counters() -> Tuple[Counter, Counter]:
    # A registry takes each name once, and a process may run several apps
    # (or re-create one in tests): every runtime shares the same two.
    global _counters
    with _lock:
        if _counters is None:
            _counters = (
                Counter("baseplate_events_put_failed",
                        "Events an app could not put, by error class.", ["queue", "error"]),
                Counter("baseplate_events_put_discarded",
                        "Held events dropped because their request failed.", ["queue"]),
            )
        return _counters


class LossCounters:
    """One queue's loss counters; fed the statsd names the runtime counts under."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._failed, discarded = _shared_counters()
        # Made now so that the series is there, at 0, from the first scrape.
        self._discarded = discarded.labels(queue=queue_name)

    def incr(self, name: str, count: int = 1) -> None:
        """Count ``put.failed.<Error>`` or ``put.discarded``; other names are not loss counters."""
        if name == _DISCARDED:
            self._discarded.inc(count)
        elif name.startswith(_FAILED):
            self._failed.labels(queue=self.queue_name, error=name[len(_FAILED):]).inc(count)
