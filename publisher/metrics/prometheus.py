"""Prometheus: the publisher's counts served on ``/metrics`` at ``metrics.prometheus``.

The :class:`~publisher.metrics.counters.Metrics` facade feeds every count, timing and
gauge both to statsd and, when ``metrics.prometheus = HOST:PORT`` is set, to
an :class:`Exporter` here, which serves them with ``prometheus_client``'s own
HTTP server (a daemon thread) from a registry of its own. A statsd name maps
to ``baseplate_events_publisher_<name with _ for .>``, with ``_total`` on
counters, ``_seconds`` on timers and ``_timestamp_seconds`` on moments (Unix
times: alert on ``time() - metric``), and a ``queue`` label holding the queue
name. Every name listed in ``publisher.metrics.names`` is there from the
first scrape (at 0), so ``rate()`` works from the start; a name not listed is
added at its first use.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Tuple, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from publisher.metrics.names import COUNTERS, GAUGES, MOMENTS, TIMERS

__all__ = ["COUNTERS", "GAUGES", "MOMENTS", "PREFIX", "TIMERS", "Exporter", "metric_name"]

PREFIX = "baseplate_events_publisher_"

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
        self._moments: Dict[str, Gauge] = {}
        for name in MOMENTS:
            self._moment(name)
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

    def _moment(self, name: str) -> Gauge:
        return self._metric(self._moments, Gauge, name, metric_name(name) + "_timestamp_seconds",
                            MOMENTS.get(name, f"moment {name} (Unix time)."))

    def moment(self, name: str, epoch: float) -> None:
        self._moment(name).set(epoch)

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
