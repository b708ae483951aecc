"""The demo's collector: :mod:`baseplate_events.collector` with the SQLite sink, and a page.

::

    python -m demo_app.collector --port 8080 --key demo=c2VjcmV0 --db events.sqlite3
    python -m demo_app.collector --port 8080 --publisher-config publisher.ini \\
        --schema shop.ttypes:Event

It is the collector a site runs (the same WSGI app, the same checks: see
:mod:`baseplate_events.collector.app`), storing into SQLite
(:mod:`baseplate_events.collector.sinks.sqlite`), plus what a developer wants
to look at: ``GET /`` is a page of counts, the latest events (fields by id,
and by name with ``--schema``) and the latest refused events with their
reasons; ``GET /api/events`` is the same as JSON with every event
(``?limit=N`` for fewer). ``GET /healthz`` answers ``ok``, ``GET /readyz``
``ready``.

As a library (tests use it), served by waitress in a background thread::

    with make_server("127.0.0.1", 0, keys={"demo": b"secret"}) as collector:
        ...  # POST to collector.url + "/v2"; collector.store.summary()
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Type

from pyramid.request import Request
from pyramid.response import Response

from baseplate_events.collector.__main__ import (
    add_arguments,
    create_server,
    serve,
    settings_from_args,
)
from baseplate_events.collector.app import make_configurator
from baseplate_events.collector.intake import DEFAULT_MAX_BODY, DEFAULT_REPLAY_WINDOW
from baseplate_events.collector.sinks.sqlite import SQLiteSink

from .collector_page import render_page

__all__ = ["Collector", "main", "make_app", "make_server"]


def page_view(request: Request) -> Response:
    store: SQLiteSink = request.registry["collector"].sink
    page = render_page(store.summary(), store.events(limit=50, latest_first=True, fields=True),
                       store.refusals(limit=50))
    return Response(body=page.encode("utf-8"), content_type="text/html", charset="utf-8")


def api_view(request: Request) -> Response:
    store: SQLiteSink = request.registry["collector"].sink
    limit = request.GET.get("limit", "")
    document = store.summary()
    document["events"] = store.events(limit=int(limit) if limit.isdigit() else None, fields=True)
    document["refused"] = store.refusals(limit=int(limit) if limit.isdigit() else None)
    return Response(body=json.dumps(document).encode("utf-8"), content_type="application/json",
                    charset=None)


def make_app(settings: Mapping[str, Any], store: SQLiteSink,
             clock: Callable[[], float] = time.time) -> Any:
    """The collector app over ``store``, with the page and the API."""
    config = make_configurator(settings, sink=store, clock=clock)
    config.add_route("page", "/")
    config.add_view(page_view, route_name="page", request_method=("GET", "HEAD"))
    config.add_route("api", "/api/events")
    config.add_view(api_view, route_name="api", request_method=("GET", "HEAD"))
    return config.make_wsgi_app()


class Collector:
    """A collector served in a background thread: ``url``, ``port``, ``store``; ``shutdown()``."""

    def __init__(self, server: Any, store: SQLiteSink) -> None:
        self._server = server
        self.store = store
        self.host: str = server.effective_host
        self.port: int = server.effective_port
        self.url = f"http://{self.host}:{self.port}"
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Collector":
        self._thread = threading.Thread(target=self._server.run, name="collector", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving, close the socket, the connections and the database (idempotent)."""
        if self._thread is not None:
            stopped = threading.Event()

            def close_everything() -> None:
                # Runs in waitress's loop thread; an empty map ends the loop.
                for dispatcher in list(self._server._map.values()):
                    dispatcher.close()
                stopped.set()

            self._server.trigger.pull_trigger(close_everything)
            stopped.wait(10)
            self._thread.join(10)
            self._thread = None
            self._server.task_dispatcher.shutdown()
        else:
            self._server.close()
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
    schema: Optional[str] = None,
    uuid_field: Optional[int] = None,
    threads: int = 4,
    start: bool = True,
) -> Collector:
    """Bind a collector (port 0 picks a free port) and, unless ``start=False``, serve it.

    :param keys: key name → raw secret (the base64-decoded ``key.secret``).
    :param clock: seconds since the epoch, for the ``Date`` check and receipt
        times; tests pass a fake one.
    :param schema: ``module:Struct``, as ``--schema``.
    """
    settings: Dict[str, Any] = {"keys": dict(keys), "replay_window": replay_window,
                                "max_body": max_body, "schema": schema, "uuid_field": uuid_field}
    store = SQLiteSink(db_path)
    app = make_app(settings, store, clock or time.time)
    server = create_server(app, host, port, threads, max_body)
    collector = Collector(server, store)
    return collector.start() if start else collector


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_app.collector",
        description="The reference event collector with the SQLite sink and a page.")
    add_arguments(parser)
    parser.add_argument("--db", help="SQLite file to keep the events in (default: "
                                     "$STATE_DIRECTORY/events.sqlite3; :memory: for a test)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one dies (the demo runner)")
    args = parser.parse_args(argv)
    from baseplate_events.collector.schema import SchemaError
    from baseplate_events.errors import ConfigError

    from baseplate_events.collector.sinks.sqlite import create as create_sqlite

    try:
        store = create_sqlite({"path": args.db} if args.db else {})
    except ConfigError as exc:
        parser.error(str(exc).replace("--option sqlite.path=", "--db "))
    try:
        app = make_app(settings_from_args(args), store)
    except (ConfigError, SchemaError) as exc:
        store.close()
        parser.error(str(exc))
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO)
    import os

    collector = app.registry["collector"]
    names = ", ".join(sorted(collector.settings.keys))
    return serve(app, args, lambda url: f"collector listening on {url} (keys: {names}; "
                                        f"db: {store.describe()})",
                 store.close, watch_parent=os.getppid() if args.exit_with_parent else None)


if __name__ == "__main__":
    sys.exit(main())
