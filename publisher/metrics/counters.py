"""Metrics: statsd counters, timers and gauges under ``metrics.namespace``, and Prometheus.

Every count is also kept locally, so the health line and file can report it
whether or not ``metrics.endpoint`` is set. With ``metrics.prometheus`` the
same counts, timings and gauges are also served on ``/metrics`` under
Prometheus names (see :mod:`publisher.metrics.prometheus`). Names (under the namespace):

- ``sent`` (events accepted), ``error.http``, ``error.io`` (failed POSTs), ``error.answer``
  (a success status whose answer does not say the batch was stored), ``error.redirect``
  (a 3xx), timer ``post``;
- gauges ``queue.depth``, ``queue.capacity``, ``spool.events``, ``spool.bytes``,
  ``spool.max_bytes``, and for a batch that keeps failing ``batch.failed_tries`` (failed
  POSTs in a row) and ``spool.oldest_age_seconds``;
- moments, on Prometheus only, as Unix times: ``last_success`` and
  ``spool.oldest`` (the health file has them as times and ages);
- loss and rescue: ``drained`` (events taken off the queue into the spool), ``split`` (batches
  halved after a 413 or a refusal), ``dead_letter`` (refused events set aside),
  ``dead_letter.dropped`` (refused events beyond ``dead_letter.max_bytes``),
  ``held`` (refused events kept for want of evidence that the collector is
  healthy), ``refused_unproven`` (backoffs taken for them),
  ``dropped.spool_full``, ``dropped.empty``, ``dropped.spool_error`` (a disk
  that took nothing at shutdown), ``auth_failure`` (401/403),
  ``retry`` (POSTs repeated after a failure);
- the disk: ``spool.write_error`` (failed spool writes, retried each second) and gauge
  ``spool.stalled`` (1 while draining is stopped by them), ``dropped.spool_damaged`` and
  ``spool.damaged_bytes`` (damaged spool records skipped), ``dropped.landing_damaged``
  (events lost to another process writing the landing ring).
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from baseplate_events.runtime.statsd_target import StatsdTarget

from publisher.metrics.names import COUNTERS
from publisher.config.sections import MetricsSection

if TYPE_CHECKING:
    from publisher.metrics.prometheus import Exporter

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.metrics")


class Metrics:
    """Counts locally and feeds statsd over UDP and Prometheus, each when configured.

    :param endpoint: statsd ``(host, port)``; None for no statsd.
    :param prometheus: ``(host, port)`` to serve ``/metrics`` on; None for no Prometheus.
    :param queue_name: the Prometheus ``queue`` label.
    """

    def __init__(
        self,
        namespace: str = "",
        endpoint: Optional[Tuple[str, int]] = None,
        prometheus: Optional[Tuple[str, int]] = None,
        queue_name: str = "",
    ) -> None:
        self.namespace = namespace
        self.endpoint = endpoint
        # Every counter from the start, so the health file lists each at 0.
        self.totals: Dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()
        self._client: Optional[StatsdTarget] = None
        self._exporter: "Optional[Exporter]" = None
        if prometheus is not None:
            self._exporter = _start_exporter(queue_name, prometheus)
        if endpoint is not None:
            self._client = StatsdTarget(endpoint[0], endpoint[1], namespace or None,
                                        key="metrics.endpoint")

    @classmethod
    def from_config(cls, section: MetricsSection, queue_name: str) -> "Metrics":
        """statsd and Prometheus as ``metrics.*`` says."""
        return cls(section.namespace, section.endpoint, prometheus=section.prometheus,
                   queue_name=queue_name)

    @property
    def target(self) -> str:
        """How start-up describes where metrics go, once: statsd, Prometheus, both or off."""
        on = []
        if self._client is not None and self.endpoint is not None:
            prefix = f" as {self.namespace}.*" if self.namespace else ""
            host = self.endpoint[0]
            host = f"[{host}]" if ":" in host else host
            on.append(f"to statsd {host}:{self.endpoint[1]}{prefix}")
        if self._exporter is not None:
            on.append(f"served for Prometheus on {self._exporter.url}")
        if not on:
            return "metrics off (neither metrics.endpoint nor metrics.prometheus is in use)"
        return "metrics " + " and ".join(on)

    @property
    def exports_moments(self) -> bool:
        """Whether :meth:`moment` goes anywhere (``/metrics`` is served)."""
        return self._exporter is not None

    def moment(self, name: str, epoch: float) -> None:
        """A Unix time, for ``/metrics`` only (statsd has no use for one)."""
        if self._exporter is not None:
            self._exporter.moment(name, epoch)

    def incr(self, name: str, count: int = 1) -> None:
        with self._lock:
            self.totals[name] = self.totals.get(name, 0) + count
        self._send("incr", name, count)

    def timing(self, name: str, milliseconds: float) -> None:
        self._send("timing", name, milliseconds)

    def gauge(self, name: str, value: float) -> None:
        self._send("gauge", name, value)

    def _send(self, kind: str, name: str, value: float) -> None:
        """Pass one ``incr``, ``timing`` or ``gauge`` on to statsd and Prometheus."""
        if self._client is not None:
            getattr(self._client, kind)(name, value)
        if self._exporter is not None:
            getattr(self._exporter, kind)(name, value)

    def close(self) -> None:
        """Stop serving ``/metrics`` (statsd over UDP holds nothing open worth closing).

        Counting may go on (the sender thread may still be finishing): the
        exporter's metrics stay, only its listener goes.
        """
        if self._exporter is not None:
            self._exporter.close()

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self.totals)


def _start_exporter(queue_name: str, address: Tuple[str, int]) -> "Optional[Exporter]":
    """The Prometheus exporter, or None (logged): a metrics problem never stops the events."""
    try:
        from publisher.metrics.prometheus import Exporter
    except ImportError:
        logger.error("metrics.prometheus: needs the prometheus_client package "
                     "(pip install 'baseplate-events[publisher]'); no /metrics this run")
        return None
    try:
        return Exporter(queue_name, address)
    except OSError as exc:
        logger.error("metrics.prometheus: cannot listen on %s:%d (%s); no /metrics this run",
                     address[0], address[1], exc.strerror or exc)
        return None
