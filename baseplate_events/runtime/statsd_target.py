"""A statsd client that neither an IPv6 literal nor a host name not resolving yet can stop.

The apps (``events.metrics_endpoint``, ``EVENTS_METRICS_ENDPOINT``) and the
publisher (``metrics.endpoint``) send their counters through one
:class:`StatsdTarget`. The host is resolved with ``getaddrinfo`` for any
address family, so ``[::1]:8125`` (brackets already stripped by
:func:`baseplate_events.validation.host_port`) and a name with only an IPv6
address both work. A name that does not resolve at start-up is one warning,
not a failed start: counters are summed locally meanwhile, the name is tried
again every :data:`RETRY_INTERVAL` seconds from a daemon thread (never from
the caller, which may be serving a request), and once it resolves the sums
are sent. Timings and gauges while unresolved are dropped: they are of the
moment.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Dict, Optional, Union

logger = logging.getLogger("baseplate_events.statsd_target")

#: Seconds between two tries to resolve a statsd host that did not resolve.
RETRY_INTERVAL = 30.0


class StatsdTarget:
    """``incr``, ``timing`` and ``gauge`` to statsd at ``host:port``; never raises.

    :param key: the setting that named the endpoint, for the warning.
    """

    def __init__(self, host: str, port: int, prefix: Optional[str], *, key: str,
                 retry_interval: float = RETRY_INTERVAL) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix
        self.key = key
        self.retry_interval = retry_interval
        self._client: Any = None
        self._pending: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._next_try = 0.0
        self._trying_in: Optional[int] = None  # pid whose thread is resolving
        problem = self._connect()
        if problem is not None:
            logger.warning(
                "%s: statsd host %s does not resolve now (%s); counting locally and trying "
                "again every %gs", key, host, problem, retry_interval)
            self._next_try = time.monotonic() + retry_interval

    @property
    def resolved(self) -> bool:
        return self._client is not None

    def _connect(self) -> Optional[str]:
        """Resolve and open the client; what went wrong, or None."""
        import statsd

        try:
            family, _, _, _, address = socket.getaddrinfo(
                self.host, self.port, 0, socket.SOCK_DGRAM)[0]
            client = statsd.StatsClient(address[0], self.port, prefix=self.prefix,
                                        ipv6=family == socket.AF_INET6)
        except (OSError, UnicodeError) as exc:
            return str(exc) or type(exc).__name__
        with self._lock:
            self._client = client
            pending, self._pending = self._pending, {}
        for name, count in pending.items():
            self._send(client, "incr", name, count)
        return None

    def _retry(self) -> None:
        if self._connect() is None:
            logger.info("%s: statsd host %s resolves now; sending counters to it",
                        self.key, self.host)
        else:
            self._next_try = time.monotonic() + self.retry_interval
        self._trying_in = None

    def _unresolved(self, kind: str, name: str, value: Union[int, float]) -> None:
        with self._lock:
            if self._client is None:
                if kind == "incr":
                    self._pending[name] = self._pending.get(name, 0) + int(value)
                pid = os.getpid()
                if self._trying_in != pid and time.monotonic() >= self._next_try:
                    self._trying_in = pid
                    threading.Thread(target=self._retry, name="statsd-resolve",
                                     daemon=True).start()
                return
            client = self._client
        self._send(client, kind, name, value)

    @staticmethod
    def _send(client: Any, kind: str, name: str, value: Union[int, float]) -> None:
        try:
            getattr(client, kind)(name, value)
        except OSError:
            pass  # UDP: a full buffer or no route loses one packet, never the caller

    def incr(self, name: str, count: int = 1) -> None:
        client = self._client
        if client is None:
            self._unresolved("incr", name, count)
        else:
            self._send(client, "incr", name, count)

    def timing(self, name: str, milliseconds: float) -> None:
        client = self._client
        if client is None:
            self._unresolved("timing", name, milliseconds)
        else:
            self._send(client, "timing", name, milliseconds)

    def gauge(self, name: str, value: float) -> None:
        client = self._client
        if client is None:
            self._unresolved("gauge", name, value)
        else:
            self._send(client, "gauge", name, value)
