"""The collector's Prometheus metrics, served on a port of their own.

``python -m baseplate_events.collector --metrics HOST:PORT`` serves them at
``http://HOST:PORT/metrics`` (a daemon thread of ``prometheus_client``), apart
from the batches' port: a scrape reaches the instance it names, not whichever
one a load balancer picks. Under gunicorn, every worker writes its figures
to prometheus_client's multiprocess directory, and the master serves their
sums once per instance (``baseplate_events.collector.gunicorn_conf``).

Every metric is named ``baseplate_events_collector_<name>``:

==============================  =========  ===============================================
``requests_total``              counter    requests by ``path`` (``/v1``, ``/v2``,
                                           ``/v2j``, ``/healthz``, ``/readyz``, ``other``)
                                           and ``status`` (the answer's code)
``events_total``                counter    events of accepted batches by ``outcome``:
                                           ``accepted`` (new) or ``duplicate``
``events_refused_total``        counter    events refused one by one (a 422) by
                                           ``reason``: ``invalid`` (the event itself)
                                           or ``sink`` (the sink cannot hold it)
``batches_refused_total``       counter    whole batches refused by ``reason``:
                                           ``malformed`` (400), ``unsigned`` (401),
                                           ``signature`` (403), ``length`` (411),
                                           ``too_large`` (413), ``encoding`` (415),
                                           ``other``
``batch_events``                histogram  events per decoded batch
``sink_store_seconds``          histogram  time the sink took to store a batch
``sink_unavailable_total``      counter    batches answered 503 because the sink could
                                           not take them
``sink_ready``                  gauge      1 while the sink takes batches, 0 from a
                                           failed write until a probe succeeds (under
                                           gunicorn: the lowest of the live workers)
==============================  =========  ===============================================
"""
from __future__ import annotations

from typing import Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["PREFIX", "CollectorMetrics", "parse_address", "serve_metrics"]

PREFIX = "baseplate_events_collector_"

#: the paths a request is counted under; any other is ``other``
PATHS = frozenset(("/v1", "/v2", "/v2j", "/healthz", "/readyz"))

_BATCH_REASONS = {400: "malformed", 401: "unsigned", 403: "signature", 404: "other",
                  411: "length", 413: "too_large", 415: "encoding"}
_BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_STORE_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CollectorMetrics:
    """The collector's metrics, in a registry of their own (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(PREFIX + "requests", "Requests by path and answer status.",
                                ["path", "status"], registry=registry)
        self.events = Counter(PREFIX + "events", "Events of accepted batches, by outcome: "
                              "accepted (new) or duplicate (stored before).", ["outcome"],
                              registry=registry)
        self.events_refused = Counter(PREFIX + "events_refused", "Events refused one by one "
                                      "(422), by reason: invalid or sink.", ["reason"],
                                      registry=registry)
        self.batches_refused = Counter(PREFIX + "batches_refused", "Whole batches refused, "
                                       "by reason.", ["reason"], registry=registry)
        self.batch_events = Histogram(PREFIX + "batch_events", "Events per decoded batch.",
                                      buckets=_BATCH_SIZES, registry=registry)
        self.store_seconds = Histogram(PREFIX + "sink_store_seconds", "Time the sink took "
                                       "to store one batch.", buckets=_STORE_SECONDS,
                                       registry=registry)
        self.sink_unavailable = Counter(PREFIX + "sink_unavailable", "Batches answered 503 "
                                        "because the sink could not take them.",
                                        registry=registry)
        self.sink_ready = Gauge(PREFIX + "sink_ready", "1 while the sink takes batches, 0 "
                                "from a failed write until a probe succeeds.",
                                multiprocess_mode="livemin", registry=registry)
        self.sink_ready.set(1)
        for outcome in ("accepted", "duplicate"):
            self.events.labels(outcome)
        for reason in ("invalid", "sink"):
            self.events_refused.labels(reason)
        for reason in sorted(set(_BATCH_REASONS.values())):
            self.batches_refused.labels(reason)

    def request(self, path: str, status: int) -> None:
        self.requests.labels(path if path in PATHS else "other", str(status)).inc()

    def batch_refused(self, status: int) -> None:
        self.batches_refused.labels(_BATCH_REASONS.get(status, "other")).inc()


def parse_address(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9102`` for IPv6) into its parts.

    :raises ValueError: not of that form, naming what was given.
    """
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9102), got {text!r}")
    return host, int(port)


def serve_metrics(registry: Optional[CollectorRegistry], address: Tuple[str, int]
                  ) -> Tuple[object, str]:
    """Serve ``registry`` (None: the multiprocess directory's sums) at ``address``.

    Returns the server (``shutdown()`` stops it) and its ``/metrics`` URL.
    """
    from prometheus_client.exposition import start_http_server

    if registry is None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    server, _ = start_http_server(address[1], address[0], registry=registry)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    return server, f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
