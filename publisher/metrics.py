"""Metrics: statsd counters, timers and gauges under ``metrics.namespace``.

Every count is also kept locally, so the health line and file can report it
whether or not ``metrics.endpoint`` is set. Names (under the namespace):

- ``sent`` (events accepted), ``error.http``, ``error.io`` (failed POSTs), timer ``post``;
- gauges ``queue.depth``, ``spool.events``, ``spool.bytes``;
- loss and rescue: ``drained`` (events taken off the queue into the spool), ``split`` (batches
  halved after a 413 or a refusal), ``dead_letter`` (refused events set aside),
  ``dead_letter.dropped`` (refused events beyond ``dead_letter.max_bytes``),
  ``held`` (refused events kept for want of evidence that the collector is
  healthy), ``refused_unproven`` (backoffs taken for them),
  ``dropped.spool_full``, ``dropped.empty``, ``dropped.spool_error`` (a disk
  that took nothing at shutdown), ``auth_failure`` (401/403),
  ``retry`` (POSTs repeated after a failure).
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Dict, Optional, Tuple

logger = logging.getLogger(__name__)


class Metrics:
    """Counts locally and, when an endpoint is configured, sends to statsd over UDP."""

    def __init__(self, namespace: str = "", endpoint: Optional[Tuple[str, int]] = None) -> None:
        self.namespace = namespace
        self.endpoint = endpoint
        self.totals: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._client = None
        if endpoint is not None:
            import statsd

            try:
                self._client = statsd.StatsClient(
                    endpoint[0], endpoint[1], prefix=namespace or None
                )
            except (OSError, socket.gaierror) as exc:
                # A metrics problem must never stop the events; say so and carry on.
                logger.error("metrics: cannot use %s:%d (%s); counting locally only",
                             endpoint[0], endpoint[1], exc)

    @property
    def target(self) -> str:
        """How start-up describes where metrics go."""
        if self.endpoint is None:
            return "metrics off (no metrics.endpoint)"
        prefix = f" as {self.namespace}.*" if self.namespace else ""
        return f"metrics to statsd {self.endpoint[0]}:{self.endpoint[1]}{prefix}"

    def incr(self, name: str, count: int = 1) -> None:
        with self._lock:
            self.totals[name] = self.totals.get(name, 0) + count
        if self._client is not None:
            try:
                self._client.incr(name, count)
            except OSError:
                pass

    def timing(self, name: str, milliseconds: float) -> None:
        if self._client is not None:
            try:
                self._client.timing(name, milliseconds)
            except OSError:
                pass

    def gauge(self, name: str, value: float) -> None:
        if self._client is not None:
            try:
                self._client.gauge(name, value)
            except OSError:
                pass

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self.totals)
