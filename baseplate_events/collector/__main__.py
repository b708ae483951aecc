"""``python -m baseplate_events.collector``: serve the collector with waitress.

::

    python -m baseplate_events.collector --port 8080 --publisher-config publisher.ini
    python -m baseplate_events.collector --port 8080 --key demo=c2VjcmV0 \\
        --sink jsonl --option jsonl.directory=/var/lib/events

``--port 0`` picks a free port; the first line printed says which, and names
the sink and where it keeps events. SIGTERM or SIGINT stops it: waitress
finishes, then the sink is closed (flushed), and the process exits 0. For
several processes, run the same app under gunicorn (see
:mod:`baseplate_events.collector`).

Slow clients: waitress reads every request whole, in its one I/O thread,
before a worker thread sees it, so idle and trickling connections cost a
socket each, never a thread. ``--connection-limit`` (default 1000) is how
many it holds (past it, new ones wait in the listen backlog), and
``--channel-timeout`` (default 60 s) closes a connection idle that long.
``/healthz`` and ``/readyz`` are served by two threads of their own, so they
answer while every batch thread waits for a sink. ``--metrics HOST:PORT``
serves the collector's Prometheus metrics on a port of their own
(:mod:`baseplate_events.collector.service.metrics`).
"""
from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import ConfigError
from .service.intake import DEFAULT_MAX_BODY, DEFAULT_REPLAY_WINDOW
from .service.heap import settle_heap
from .service.settings import COLLECTOR_SETTINGS, SINKS

__all__ = [
    "HEALTH_PATHS",
    "add_arguments",
    "add_schema_arguments",
    "add_serving_arguments",
    "add_sink_arguments",
    "build_parser",
    "create_server",
    "main",
    "serve",
    "settings_from_args",
    "sink_settings_from_args",
]

DEFAULT_CONNECTION_LIMIT = 1000
DEFAULT_CHANNEL_TIMEOUT = 60
#: how much waitress's I/O thread reads from a connection at once (its default: 8192)
RECV_BYTES = 65536
#: the paths served by threads of their own, never queued behind batches
HEALTH_PATHS = frozenset(("/healthz", "/readyz"))
#: the threads that serve them
HEALTH_THREADS = 2


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"expected a port number, 0 to 65535, got {text!r}")
    return int(text)


def _address(text: str) -> "tuple[str, int]":
    from .service.metrics import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Lanes:
    """waitress's task dispatcher, with a lane of its own for ``/healthz`` and ``/readyz``.

    waitress hands a connection to a worker thread once a request on it is
    whole. A connection whose next request is a health check goes to
    :data:`HEALTH_THREADS` threads that only such requests reach first, so a
    probe never waits behind batches that hold every worker thread.
    """

    def __init__(self, batches: Any, health: Any) -> None:
        self.batches = batches
        self.health = health

    def add_task(self, channel: Any) -> None:
        requests = getattr(channel, "requests", None) or [None]
        path = getattr(requests[0], "path", None)
        (self.health if path in HEALTH_PATHS else self.batches).add_task(channel)

    def set_thread_count(self, count: int) -> None:
        self.batches.set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        done = self.health.shutdown(cancel_pending, timeout)
        return bool(self.batches.shutdown(cancel_pending, timeout)) and bool(done)


def _room_for(connections: int) -> None:
    """Raise the soft limit on open files to fit ``connections`` sockets, if it can."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 64  # the sink's files, the listening sockets, the logs
    if soft != resource.RLIM_INFINITY and soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def create_server(app: Any, host: str, port: int, threads: int, max_body: int,
                  connection_limit: int = DEFAULT_CONNECTION_LIMIT,
                  channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT) -> Any:
    """A waitress server for the collector: limits for slow clients, a lane for health."""
    import waitress
    from waitress.task import ThreadedTaskDispatcher

    from .service.app import DRAIN_FACTOR

    _room_for(connection_limit)
    server: Any = waitress.create_server(
        app, host=host, port=port, threads=threads,
        # waitress reads the whole body before the app runs: past this it
        # answers 413 itself, and the app refuses what is over --max-body.
        max_request_body_size=DRAIN_FACTOR * max_body + 1,
        clear_untrusted_proxy_headers=True,
        connection_limit=connection_limit,
        channel_timeout=channel_timeout,
        cleanup_interval=max(1, min(30, channel_timeout // 2)),
        # poll(), not select(): select() cannot watch a descriptor past 1023
        asyncore_use_poll=True,
        # a gzipped batch (75 KB of 500 events of 750 bytes) in two reads, not ten:
        # each read is a turn of the I/O thread's loop, in Python
        recv_bytes=RECV_BYTES)
    health = ThreadedTaskDispatcher()
    health.set_thread_count(HEALTH_THREADS)
    server.task_dispatcher = _Lanes(server.task_dispatcher, health)
    return server


def add_arguments(parser: "argparse._ActionsContainer") -> None:
    """The flags every collector command takes (this one and ``python -m demo_app.collector``)."""
    add_serving_arguments(parser)
    add_schema_arguments(parser)


def add_serving_arguments(parser: "argparse._ActionsContainer") -> None:
    """The flags of the HTTP service: address, keys, limits, metrics."""
    parser.add_argument("--host", default="127.0.0.1", metavar="HOST",
                        help="the address to listen on")
    parser.add_argument("--port", type=_port, default=8080, metavar="PORT",
                        help="0 picks a free port (printed)")
    parser.add_argument("--key", action="append", default=[], metavar="NAME=BASE64",
                        help="a signing key; repeat for more")
    parser.add_argument("--publisher-config", metavar="INI",
                        help="also take the keys of every [event-publisher:*] section")
    parser.add_argument("--replay-window", type=float, default=DEFAULT_REPLAY_WINDOW,
                        metavar="SECONDS", help="how far a request's Date may be off")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                        help="largest body, compressed or decompressed")
    parser.add_argument("--threads", type=_positive, default=8, metavar="N",
                        help="waitress worker threads")
    parser.add_argument("--connection-limit", type=_positive, default=DEFAULT_CONNECTION_LIMIT,
                        metavar="N", help="connections held open at once, idle or slow ones "
                                          f"included (default {DEFAULT_CONNECTION_LIMIT})")
    parser.add_argument("--channel-timeout", type=_positive, default=DEFAULT_CHANNEL_TIMEOUT,
                        metavar="SECONDS", help="close a connection idle this long (default "
                                                f"{DEFAULT_CHANNEL_TIMEOUT})")
    parser.add_argument("--metrics", type=_address, metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0 "
                             "picks a free one, printed)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def add_schema_arguments(parser: "argparse._ActionsContainer") -> None:
    """``--schema`` and ``--uuid-field``: how v2 events are read."""
    parser.add_argument("--schema", metavar="MODULE:STRUCT",
                        help="the generated Thrift class of your v2 events: strict checks "
                             "and field names (e.g. shop.ttypes:Event)")
    parser.add_argument("--uuid-field", metavar="ID",
                        help="the id of the top-level field holding each v2 event's uuid")


def add_sink_arguments(parser: "argparse._ActionsContainer", verb: str = "go") -> None:
    """``--sink`` and ``--option``: where accepted events go (or, for the tail, are read)."""
    parser.add_argument("--sink", choices=SINKS, default=COLLECTOR_SETTINGS["sink"].default,
                        help=f"where accepted events {verb} (default: sqlite)")
    parser.add_argument("--option", action="append", default=[], metavar="SINK.NAME=VALUE",
                        help="a sink option, e.g. sqlite.path=events.db or "
                             "jsonl.directory=/var/lib/events; repeat for more")


def sink_settings_from_args(args: argparse.Namespace,
                            parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """``sink`` and each ``SINK.NAME`` setting from ``--sink`` and ``--option``.

    A malformed ``--option`` stops the command with a usage error.
    """
    settings: Dict[str, Any] = {"sink": args.sink}
    for option in args.option:
        name, sep, value = option.partition("=")
        if not sep or "." not in name:
            parser.error(f"--option: expected SINK.NAME=VALUE, got {option!r}")
        settings[name.strip()] = value
    return settings


def settings_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    """The settings mapping ``make_app`` takes, from the parsed flags."""
    settings: Dict[str, Any] = {
        "keys": " ".join(args.key),
        "replay_window": args.replay_window,
        "max_body": args.max_body,
    }
    if args.publisher_config:
        settings["publisher_config"] = args.publisher_config
    if args.schema:
        settings["schema"] = args.schema
    if args.uuid_field is not None:
        settings["uuid_field"] = args.uuid_field
    return settings


def serve(app: Any, args: argparse.Namespace, banner: Callable[[str], str],
          on_stop: Callable[[], None], on_listening: Optional[Callable[[], None]] = None,
          prog: str = "collector") -> int:
    """Serve ``app`` with waitress in this thread until SIGTERM or SIGINT; then ``on_stop()``.

    ``on_listening()`` is called once the socket listens, before the banner is
    printed (a SIGTERM from then on is a clean stop).

    A host or port it cannot listen on is one line on standard error, ``PROG: error:
    --host, --port: cannot listen on HOST:PORT: REASON``, and status 2.
    """

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        # waitress's loop runs in this (main) thread; leaving it is how it stops,
        # the same way it handles Ctrl-C itself.
        raise SystemExit(0)

    # Before the socket listens: a SIGTERM that arrives as soon as the port
    # answers is then a clean stop (exit 0, the sink closed), not a kill.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server: Any = None
    try:
        try:
            server = create_server(app, args.host, args.port, args.threads, args.max_body,
                                   args.connection_limit, args.channel_timeout)
        except (OSError, ValueError) as exc:  # in use, not ours to bind, or not resolvable
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"{prog}: error: --host, --port: cannot listen on {args.host}:{args.port}: "
                  f"{reason}", file=sys.stderr, flush=True)
            return 2
        if on_listening is not None:
            on_listening()
        settle_heap()
        print(banner(f"http://{args.host}:{server.effective_port}"), flush=True)
        server.run()
    except SystemExit:
        pass
    finally:
        if server is not None:
            server.close()
            server.task_dispatcher.shutdown()
        on_stop()
    print("collector stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command's flags, each declared once (docs/collector.rst lists them from here)."""
    parser = argparse.ArgumentParser(prog="python -m baseplate_events.collector",
                                     description="The event collector, served by waitress.")
    add_arguments(parser)
    add_sink_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO)
    settings = settings_from_args(args)
    settings.update(sink_settings_from_args(args, parser))
    from .service.app import make_configurator
    from .decode.schema import SchemaError
    from .sinks import SinkUnavailable

    try:
        config = make_configurator(settings)
    except (ConfigError, SchemaError) as exc:
        parser.error(str(exc))
    except SinkUnavailable as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return 1
    collector = config.registry["collector"]
    names: List[str] = sorted(collector.settings.keys)
    sink = collector.describe_sink()
    metrics = ""
    if args.metrics:
        from .service.metrics import serve_metrics

        try:
            _, url = serve_metrics(collector.metrics.registry, args.metrics)
        except OSError as exc:
            collector.close()
            parser.error(f"--metrics: cannot listen on {args.metrics[0]}:{args.metrics[1]}: "
                         f"{exc.strerror}")
        metrics = f"; metrics on {url}"
    return serve(
        config.make_wsgi_app(), args,
        lambda url: f"collector listening on {url} (keys: {', '.join(names)}; sink: {sink}"
                    f"{metrics})",
        collector.close, prog=parser.prog)


if __name__ == "__main__":
    sys.exit(main())
