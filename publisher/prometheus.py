"""Prometheus: the publisher's counts served on ``/metrics`` at ``metrics.prometheus``.

The :class:`~publisher.metrics.Metrics` facade feeds every count, timing and
gauge both to statsd and, when ``metrics.prometheus = HOST:PORT`` is set, to
an :class:`Exporter` here, which serves them with ``prometheus_client``'s own
HTTP server (a daemon thread) from a registry of its own. A statsd name maps
to ``baseplate_events_publisher_<name with _ for .>``, with ``_total`` on
counters and ``_seconds`` on timers, and a ``queue`` label holding the queue
name. Every name listed in :data:`COUNTERS`, :data:`GAUGES` and
:data:`TIMERS` is there from the first scrape (at 0), so ``rate()`` works from
the start; a name not listed is added at its first use.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Tuple, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

PREFIX = "baseplate_events_publisher_"

#: statsd counter name -> what it counts (the metric's HELP line).
COUNTERS: Dict[str, str] = {
    "sent": "Events the collector accepted.",
    "error.http": "POSTs the collector answered with an error status.",
    "error.io": "POSTs that failed on the connection (refused, reset, timed out).",
    "retry": "POSTs repeated after a failure.",
    "auth_failure": "POSTs the collector refused with 401 or 403.",
    "split": "Batches halved after a 413 answer or a refusal.",
    "dead_letter": "Events the collector refused while accepting others, kept in the "
    "dead-letter file.",
    "dead_letter.dropped": "Refused events dropped because the dead-letter file reached "
    "dead_letter.max_bytes.",
    "held": "Times a refused event was kept, for want of evidence that the collector is healthy.",
    "refused_unproven": "Backoffs taken because the collector refused events and accepted none.",
    "drained": "Events taken off the queue into the spool.",
    "dropped.spool_full": "Events dropped because the spool reached spool.max_bytes.",
    "dropped.empty": "Empty messages taken off the queue and dropped.",
    "dropped.spool_error": "Events lost at shutdown because the disk took nothing.",
    "dropped.spool_damaged": "Events of damaged spool records skipped (when their count is known).",
    "spool.damaged_bytes": "Bytes of damaged spool records skipped.",
    "dropped.landing_damaged": "Events lost because another process overwrote the landing ring.",
    "spool.write_error": "Spool writes that failed (a full disk); retried every second.",
    "error.answer": "POSTs answered with a success status that does not say the batch was "
    "stored (a status outside collector.success_statuses, an HTML page, a JSON count "
    "short of the batch); kept and retried.",
    "error.redirect": "POSTs answered with a redirect (3xx), never followed; kept and retried.",
}
#: statsd gauge name -> what it measures.
GAUGES: Dict[str, str] = {
    "queue.depth": "Events waiting in the POSIX message queue.",
    "spool.events": "Events in the spool, not yet accepted by the collector.",
    "spool.bytes": "Bytes in the spool, not yet accepted by the collector.",
    "spool.stalled": "1 while the spool cannot be written and draining has stopped, else 0.",
    "batch.failed_tries": "Failed POSTs in a row for the oldest unsent batch (0 once one is "
    "accepted).",
    "spool.oldest_age_seconds": "Age of the oldest event in the spool, 0 when it is empty.",
}
#: statsd timer name (milliseconds) -> what it times (in seconds here).
TIMERS: Dict[str, str] = {
    "post": "Time one batch POST took, answer included.",
}

def metric_name(statsd_name: str) -> str:
    """``dropped.spool_full`` -> ``baseplate_events_publisher_dropped_spool_full``."""
    return PREFIX + "".join(c if c.isalnum() else "_" for c in statsd_name)


M = TypeVar("M")

class Exporter:
    """The publisher's metrics in a registry of their own, served over HTTP.

    :param queue_name: the value of the ``queue`` label.
    :param address: where to listen; port 0 takes a free port (see :attr:`address`).
    :raises OSError: the address cannot be listened on.
    """

    def __init__(self, queue_name: str, address: Tuple[str, int]) -> None:
        self.queue_name = queue_name
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._counters: Dict[str, Counter] = {}
        self._gauges: Dict[str, Gauge] = {}
        self._timers: Dict[str, Histogram] = {}
        for name in COUNTERS:
            self._counter(name)
        for name in GAUGES:
            self._gauge(name)
        for name in TIMERS:
            self._timer(name)
        self._server, self._thread = start_http_server(
            address[1], address[0], registry=self.registry
        )
        #: The address actually bound (the real port when 0 was asked for).
        self.address: Tuple[str, int] = tuple(self._server.server_address[:2])  # type: ignore[assignment]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"

    # Each metric is made once, under the lock: two threads may meet a new name at once.

    def _metric(self, made: Dict[str, M], kind: Callable[..., Any], name: str, full_name: str,
                help: str) -> M:
        metric = made.get(name)
        if metric is None:
            with self._lock:
                if name not in made:
                    made[name] = kind(full_name, help, ["queue"], registry=self.registry
                                      ).labels(queue=self.queue_name)
                metric = made[name]
        return metric

    def _counter(self, name: str) -> Counter:
        # prometheus_client adds the _total suffix itself.
        return self._metric(self._counters, Counter, name, metric_name(name),
                            COUNTERS.get(name, f"statsd counter {name}."))

    def _gauge(self, name: str) -> Gauge:
        return self._metric(self._gauges, Gauge, name, metric_name(name),
                            GAUGES.get(name, f"statsd gauge {name}."))

    def _timer(self, name: str) -> Histogram:
        return self._metric(self._timers, Histogram, name, metric_name(name) + "_seconds",
                            TIMERS.get(name, f"statsd timer {name}."))

    def incr(self, name: str, count: int = 1) -> None:
        self._counter(name).inc(count)

    def gauge(self, name: str, value: float) -> None:
        self._gauge(name).set(value)

    def timing(self, name: str, milliseconds: float) -> None:
        self._timer(name).observe(milliseconds / 1000.0)

    def close(self) -> None:
        """Stop serving; the port is free again when this returns. Counting still works."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
