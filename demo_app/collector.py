"""The demo's collector: :mod:`baseplate_events.collector` with the SQLite sink, and a page.

::

    python -m demo_app.collector --port 8080 --key demo=c2VjcmV0 --db events.sqlite3
    python -m demo_app.collector --port 8080 --publisher-config publisher.ini \\
        --schema shop.ttypes:Event

It is the collector a site runs (the same WSGI app, the same checks: see
:mod:`baseplate_events.collector.service.app`), storing into SQLite
(:mod:`demo_app.page_store`, the library's SQLite sink with the page's
columns and journal), plus what a developer wants
to look at: ``GET /`` is a live page (:mod:`demo_app.collector_page`): events
and refusals per second over the last ten minutes, counts per stream, source
and action, the latest events (fields by id, and by name with ``--schema``),
the latest refused events with their reasons and the put-to-stored delays.
``GET /api/events`` lists the stored events as JSON, the last stored first,
page by page (``?limit=N``, then ``&before=`` the ``next`` cursor);
``GET /api/stats`` is the page's picture (:mod:`demo_app.collector_api`).
``GET /healthz`` answers ``ok``, ``GET /readyz`` ``ready``.

It listens on 127.0.0.1 unless ``--host`` says otherwise: the page shows the
events' contents to whoever can reach it.

As a library (tests use it), served by waitress in a background thread::

    with make_server("127.0.0.1", 0, keys={"demo": b"secret"}) as collector:
        ...  # POST to collector.url + "/v2"; collector.store.summary()
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Type

from pyramid.events import NewResponse

from baseplate_events.collector.__main__ import (
    add_arguments,
    create_server,
    serve,
    settings_from_args,
)
from baseplate_events.collector.service.app import make_configurator
from baseplate_events.collector.service.intake import DEFAULT_MAX_BODY, DEFAULT_REPLAY_WINDOW

from .answer_tally import AnswerTally, count_answer
from .collector_api import events_view, stats_view
from .collector_page import ASSETS, asset_view, page_hosts, same_host_only
from .page_store import PageStore
from .page_store import create as create_store
from .serve import watch_parent
from .store_reader import StoreReader

__all__ = ["DemoCollector", "main", "make_app", "make_server"]


def make_app(settings: Mapping[str, Any], store: PageStore,
             clock: Callable[[], float] = time.time, listen_host: str = "127.0.0.1") -> Any:
    """The collector app over ``store``, with the page, its JSON and the tally of answers.

    :param listen_host: the address served; the page answers only to its names.
    """
    config = make_configurator(settings, sink=store, clock=clock)
    config.registry["answer_tally"] = AnswerTally(clock)
    config.registry["page_hosts"] = page_hosts(listen_host)
    config.add_subscriber(count_answer, NewResponse)
    views = {path: asset_view for path in ASSETS}
    views.update({"/api/events": events_view, "/api/stats": stats_view})
    for path, view in views.items():
        name = "page" + path.replace("/", "-").replace(".", "-")
        config.add_route(name, path)
        config.add_view(same_host_only(view), route_name=name, request_method=("GET", "HEAD"))
    config.registry["store_reader"] = StoreReader(store)  # last: nothing fails after it
    return config.make_wsgi_app()


class DemoCollector:
    """A collector served in a background thread: ``url``, ``port``, ``store``; ``shutdown()``."""

    def __init__(self, server: Any, store: PageStore,
                 reader: Optional[StoreReader] = None) -> None:
        self._server = server
        self.store = store
        self._reader = reader
        self.host: str = server.effective_host
        self.port: int = server.effective_port
        self.url = f"http://{self.host}:{self.port}"
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "DemoCollector":
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

            try:
                self._server.trigger.pull_trigger(close_everything)
            except OSError:  # the loop has already closed its trigger: nothing left to wake
                close_everything()
            stopped.wait(10)
            self._thread.join(10)
            self._thread = None
            self._server.task_dispatcher.shutdown()
        else:
            self._server.close()
        if self._reader is not None:
            self._reader.close()
        self.store.close()

    def __enter__(self) -> "DemoCollector":
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
) -> DemoCollector:
    """Bind a collector (port 0 picks a free port) and, unless ``start=False``, serve it.

    :param keys: key name → raw secret (the base64-decoded ``key.secret``).
    :param clock: seconds since the epoch, for the ``Date`` check and receipt
        times; tests pass a fake one.
    :param schema: ``module:Struct``, as ``--schema``.
    """
    settings: Dict[str, Any] = {"keys": dict(keys), "replay_window": replay_window,
                                "max_body": max_body, "schema": schema, "uuid_field": uuid_field}
    store = PageStore(db_path)
    app = make_app(settings, store, clock or time.time, host)
    server = create_server(app, host, port, threads, max_body)
    collector = DemoCollector(server, store, app.registry["store_reader"])
    return collector.start() if start else collector


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_app.collector",
        description="The reference event collector with the SQLite sink and a page.")
    add_arguments(parser)
    # The page shows what events hold: only this machine sees it unless asked.
    parser.set_defaults(host="127.0.0.1")
    parser.add_argument("--db", help="SQLite file to keep the events in (default: "
                                     "$STATE_DIRECTORY/events.sqlite3; :memory: for a test)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one dies (the demo runner)")
    args = parser.parse_args(argv)
    from baseplate_events.collector.decode.schema import SchemaError
    from baseplate_events.errors import ConfigError

    from baseplate_events.collector.sinks import SinkUnavailable

    try:
        store = create_store({"path": args.db} if args.db else {})
    except ConfigError as exc:
        parser.error(str(exc).replace("--option sqlite.path=", "--db "))
    except SinkUnavailable as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return 1
    try:
        app = make_app(settings_from_args(args), store, listen_host=args.host)
    except (ConfigError, SchemaError) as exc:
        store.close()
        parser.error(str(exc))
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO)
    import os

    collector = app.registry["collector"]
    reader: StoreReader = app.registry["store_reader"]
    names = ", ".join(sorted(collector.settings.keys))

    def close() -> None:
        reader.close()
        store.close()

    parent = os.getppid()

    def listening() -> None:
        if args.exit_with_parent:  # SIGTERM: serve's clean stop, the store closed
            watch_parent(parent, lambda: os.kill(os.getpid(), signal.SIGTERM))

    return serve(app, args, lambda url: f"collector listening on {url} (keys: {names}; "
                                        f"db: {store.describe()})",
                 close, on_listening=listening, prog=parser.prog)


if __name__ == "__main__":
    sys.exit(main())
