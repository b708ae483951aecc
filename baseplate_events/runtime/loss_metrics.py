"""The apps' loss counters: events a request could not put, or held and dropped.

Fed by the runtime (:mod:`baseplate_events.runtime.request_events`) whenever a put
fails (``put.failed.<Error>``, under either error policy) or a transactional
request's held events are dropped (``put.discarded``). They go to statsd over
UDP (``events.metrics_endpoint`` / ``EVENTS_METRICS_ENDPOINT``, under
``metrics_namespace``) and to Prometheus (``events.prometheus``; the counters
themselves live in :mod:`baseplate_events.runtime.prometheus`), each when configured.
"""
from __future__ import annotations

from typing import Any, Callable

from .. import validation
from ..errors import ConfigError
from .settings import EventsSettings
from .statsd_target import StatsdTarget

__all__ = ["LossMetrics"]


def _statsd_client(settings: EventsSettings, key: Callable[[str], str]) -> Any:
    """A statsd client for the app-side loss counters, or None when not configured."""
    if settings.metrics_endpoint is None:
        return None
    try:
        import statsd  # noqa: F401 - StatsdTarget's; its absence is refused up front
    except ImportError:
        raise ConfigError(
            key("metrics_endpoint"),
            "needs the statsd package (pip install 'baseplate-events[publisher]')",
        ) from None
    name = key("metrics_endpoint")
    host, port = validation.host_port(name, settings.metrics_endpoint)
    return StatsdTarget(host, port, settings.metrics_namespace or None, key=name)


def _loss_counters(settings: EventsSettings) -> Any:
    """The Prometheus loss counters of the settings' queue, or None when not configured."""
    if not settings.prometheus:
        return None
    from .prometheus import LossCounters

    return LossCounters(settings.queue_name)


class LossMetrics:
    """One integration's loss counters, in statsd and Prometheus, each when configured.

    :raises ConfigError: a statsd endpoint is set but the statsd package is missing.
    """

    def __init__(self, settings: EventsSettings, key: Callable[[str], str]) -> None:
        self._statsd = _statsd_client(settings, key)
        self._prometheus = _loss_counters(settings)

    def incr(self, name: str, value: int = 1) -> None:
        """Count ``name`` in statsd (UDP: never blocks) and Prometheus, each when configured."""
        if self._statsd is not None:
            self._statsd.incr(name, value)
        if self._prometheus is not None:
            self._prometheus.incr(name, value)
