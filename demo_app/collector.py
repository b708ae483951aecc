"""A reference event collector: the far end of the pipeline, for development and tests.

::

    python -m demo_app.collector --port 8080 --key demo=c2VjcmV0 --db events.sqlite3
    python -m demo_app.collector --port 8080 --publisher-config publisher.ini

It takes what ``python -m publisher`` sends (``POST /v1``, ``/v2``, ``/v2j``;
signed, gzipped batches) and refuses what a strict collector would; the rules
and statuses are in :mod:`demo_app.intake`. Accepted events go to SQLite,
de-duplicated by uuid (:mod:`demo_app.store`). ``GET /`` is a page of counts
and the latest events, ``GET /api/events`` the same as JSON with every event
(``?limit=N`` for fewer), ``GET /healthz`` answers ``ok``.

As a library (tests use it)::

    with make_server("127.0.0.1", 0, keys={"demo": b"secret"}) as collector:
        ...  # POST to collector.url + "/v2"; collector.store.summary()

The server is the standard library's ``ThreadingHTTPServer``, not waitress: it
is a development collector that has to start in-process on port 0 in a test
with no dependency beyond the stdlib, and its handler needs the raw request
(headers, exact ``Content-Length`` reads, connection closing on refusals)
rather than a WSGI view of it. HTTP/1.1 keep-alive is on, so the publisher's
session is exercised as against a real collector. It is not an Internet-facing
server: run a real collector behind a real front end in production.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import configparser
import json
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Type
from urllib.parse import parse_qs, urlsplit

from .collector_page import render_page
from .intake import (
    DEFAULT_MAX_BODY,
    DEFAULT_REPLAY_WINDOW,
    IntakeConfig,
    Refused,
    judge,
    read_length,
)
from .store import EventStore

__all__ = ["Collector", "main", "make_server"]

logger = logging.getLogger(__name__)

#: A body up to this many times the cap is read and dropped before the 413;
#: a bigger one is answered at once and the connection closed.
_DRAIN_FACTOR = 8


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the publisher's session expects
    server_version = "baseplate-events-collector/0.1"
    timeout = 30  # a client that stalls mid-request does not hold a thread for ever
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        intake = self.server.intake
        headers = {name.title(): value for name, value in self.headers.items()}
        try:
            length = read_length(headers, intake.max_body)
        except Refused as refusal:
            declared = refusal.extra.pop("length", None)
            if declared is not None and declared <= _DRAIN_FACTOR * intake.max_body:
                # Read and drop a body somewhat over the cap, so that the client
                # sees the 413 (and can split its batch) instead of a reset
                # connection, and the connection stays usable.
                self._discard(declared)
            else:
                # The body was not read: this connection cannot carry another request.
                self.close_connection = True
            self._reply(*refusal.answer())
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        try:
            status, answer = judge(intake, self.server.store, path, headers, body)
        except Exception as exc:  # a bug or a database error: a 5xx the publisher retries
            logger.exception("collector: failed to handle a batch")
            status, answer = 500, {"error": f"internal error: {type(exc).__name__}"}
        self._reply(status, answer)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                self.close_connection = True
                return
            length -= len(chunk)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        store = self.server.store
        if parts.path == "/":
            page = render_page(store.summary(), store.events(limit=50, latest_first=True))
            self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
        elif parts.path == "/api/events":
            limit = parse_qs(parts.query).get("limit", [""])[0]
            document = store.summary()
            document["events"] = store.events(limit=int(limit) if limit.isdigit() else None)
            self._send(200, json.dumps(document).encode("utf-8"), "application/json")
        elif parts.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _reply(self, status: int, answer: Dict[str, Any]) -> None:
        try:
            self.server.store.count_response(status)
        except Exception:  # the tally is for the page; never let it cost the answer
            logger.exception("collector: failed to count a response")
        self._send(status, json.dumps(answer).encode("utf-8"), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: Any, intake: IntakeConfig, store: EventStore, verbose: bool):
        self.intake = intake
        self.store = store
        self.verbose = verbose
        super().__init__(address, _Handler)


class Collector:
    """A running collector: ``url``, ``port``, ``store``; ``shutdown()`` stops it."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.store = server.store
        host, port = server.server_address[:2]
        self.host: str = host if isinstance(host, str) else host.decode()
        self.port: int = port
        self.url = f"http://{self.host}:{self.port}"
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Collector":
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="collector", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        # A short poll so that shutdown() returns at once (tests stop many servers).
        self._server.serve_forever(poll_interval=0.05)

    def shutdown(self) -> None:
        """Stop serving, close the socket and the database (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.store.close()

    def __enter__(self) -> "Collector":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.shutdown()


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    keys: Mapping[str, bytes],
    db_path: str = ":memory:",
    replay_window: float = DEFAULT_REPLAY_WINDOW,
    max_body: int = DEFAULT_MAX_BODY,
    clock: Optional[Callable[[], float]] = None,
    verbose: bool = False,
    start: bool = True,
) -> Collector:
    """Bind a collector (port 0 picks a free port) and, unless ``start=False``, serve it.

    :param keys: key name → raw secret (the base64-decoded ``key.secret``).
    :param clock: seconds since the epoch, for the ``Date`` check and receipt
        times; tests pass a fake one.
    """
    intake = IntakeConfig(dict(keys), replay_window, max_body, clock or time.time)
    collector = Collector(_Server((host, port), intake, EventStore(db_path), verbose))
    return collector.start() if start else collector


# -- command line -------------------------------------------------------------


def _parse_key(text: str) -> "tuple[str, bytes]":
    name, sep, secret = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=BASE64SECRET, got {text!r}")
    try:
        return name, base64.b64decode(secret, validate=True)
    except binascii.Error:
        raise argparse.ArgumentTypeError(f"the secret of key {name!r} is not base64") from None


def keys_from_publisher_config(path: str) -> Dict[str, bytes]:
    """The keys of every ``[event-publisher:*]`` section of an INI file.

    ``key.secret`` (base64) or ``key.secret_file`` (a file holding it), as the
    publisher reads them; ``${VAR}`` is expanded from the environment.
    """
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(path):
        raise SystemExit(f"collector: cannot read {path}")
    keys: Dict[str, bytes] = {}
    for section in parser.sections():
        values = parser[section]
        if not section.startswith("event-publisher:") or "key.name" not in values:
            continue
        secret = os.path.expandvars(values.get("key.secret", ""))
        if not secret and values.get("key.secret_file"):
            with open(os.path.expandvars(values["key.secret_file"])) as f:
                secret = f.read().strip()
        keys[os.path.expandvars(values["key.name"])] = base64.b64decode(secret)
    return keys


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_app.collector", description="A reference event collector."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    parser.add_argument("--key", type=_parse_key, action="append", default=[],
                        metavar="NAME=BASE64", help="a signing key; repeat for more")
    parser.add_argument("--publisher-config", metavar="INI",
                        help="also take the keys of every [event-publisher:*] section")
    parser.add_argument("--db", default=":memory:",
                        help="SQLite file to keep the events in (default: memory only)")
    parser.add_argument("--replay-window", type=float, default=DEFAULT_REPLAY_WINDOW)
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one dies (the demo runner)")
    args = parser.parse_args(argv)
    keys: Dict[str, bytes] = dict(args.key)
    if args.publisher_config:
        keys.update(keys_from_publisher_config(args.publisher_config))
    if not keys:
        parser.error("no keys: give --key NAME=BASE64 or --publisher-config")
    collector = make_server(args.host, args.port, keys=keys, db_path=args.db,
                            replay_window=args.replay_window, max_body=args.max_body,
                            verbose=args.verbose, start=False)
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_with_parent:
        from .serve import watch_parent

        watch_parent(os.getppid(), stop.set)
    collector.start()
    names: List[str] = sorted(keys)
    print(f"collector listening on {collector.url} (keys: {', '.join(names)}; db: {args.db})",
          flush=True)
    while not stop.wait(0.5):
        pass
    collector.shutdown()
    print("collector stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
