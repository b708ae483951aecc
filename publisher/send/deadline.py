"""The deadline of a POST: a watchdog thread that shuts down a connection that overran.

:mod:`publisher.send.transport` arms it around each POST. urllib3's connections
are subclassed (:func:`watched_pools`) only so that each new socket is handed
to the watchdog; nothing else about them changes.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Dict, Optional, Type

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Watchdog:
    """One daemon thread that shuts down the connection of a POST that overran its deadline.

    Each new connection hands it a duplicate of its socket's descriptor
    (:meth:`adopt`), kept until the connection closes (:meth:`release`).
    ``shutdown(2)`` through that duplicate ends the connection for every thread
    using it, and since the duplicate is ours, its number cannot be reused by
    another file while we hold it, whatever urllib3 does with its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._until: Optional[float] = None  # monotonic deadline of the POST under way
        self._waiting_unbounded = False
        self._current: Optional["_Watched"] = None  # the connection a POST would use
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        #: Whether the deadline of the last POST passed and its connection was shut down.
        self.fired = False
        #: Connections watched so far.
        self.adopted = 0

    def arm(self, seconds: float) -> None:
        """Start the clock of one POST."""
        with self._lock:
            self._until = time.monotonic() + seconds
            self.fired = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="post-deadline", daemon=True
                )
                self._thread.start()
            elif self._waiting_unbounded:
                # Only an idle watchdog needs waking: a busy one wakes at the
                # earlier deadline anyway and finds this later one.
                self._lock.notify()

    def disarm(self) -> bool:
        """Stop the clock; returns whether the deadline passed (and the connection was cut)."""
        with self._lock:
            self._until = None
            return self.fired

    def adopt(self, connection: "_Watched", sock: socket.socket) -> None:
        """Watch a new connection's socket (cut at once if the deadline already passed)."""
        spare = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
        with self._lock:
            connection._spare = spare
            self._current = connection
            self.adopted += 1
            if self._until is not None and time.monotonic() >= self._until:
                self._cut()

    def release(self, connection: "_Watched") -> None:
        """Forget a connection that closed, and close our duplicate of its socket."""
        with self._lock:
            spare, connection._spare = connection._spare, None
            if self._current is connection:
                self._current = None
        if spare is not None:
            spare.close()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()

    def _cut(self) -> None:
        """Shut the current connection down (the lock is held)."""
        self.fired = True
        self._until = None
        current = self._current
        if current is not None and current._spare is not None:
            try:
                current._spare.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer: the POST is failing anyway

    def _run(self) -> None:
        with self._lock:
            while not self._stopped:
                until = self._until
                if until is None:
                    self._waiting_unbounded = True
                    self._lock.wait()
                    self._waiting_unbounded = False
                    continue
                left = until - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                else:
                    self._cut()


class _Watched:
    """Mixed into urllib3's connection classes: tells the watchdog about each socket."""

    watchdog: Watchdog
    _spare: Optional[socket.socket] = None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        self.watchdog.adopt(self, sock)
        return sock

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            self.watchdog.release(self)


def watched_pools(
    watchdog: Watchdog, response_class: Optional[type] = None
) -> Dict[str, Type[HTTPConnectionPool]]:
    """urllib3 pool classes whose connections report to ``watchdog``.

    :param response_class: the :class:`http.client.HTTPResponse` subclass their
        connections read answers with (default: http.client's own).
    """
    extra: Dict[str, object] = {"watchdog": watchdog}
    if response_class is not None:
        extra["response_class"] = response_class
    http = type("WatchedHTTPConnection", (_Watched, HTTPConnection), extra)
    https = type("WatchedHTTPSConnection", (_Watched, HTTPSConnection), extra)
    return {
        "http": type("WatchedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("WatchedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }
