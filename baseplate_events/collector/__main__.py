"""``python -m baseplate_events.collector``: serve the collector with waitress.

::

    python -m baseplate_events.collector --port 8080 --publisher-config publisher.ini
    python -m baseplate_events.collector --port 8080 --key demo=c2VjcmV0 \\
        --sink jsonl --option jsonl.directory=/var/lib/events

``--port 0`` picks a free port; the first line printed says which. SIGTERM or
SIGINT stops it: waitress finishes, then the sink is closed (flushed), and
the process exits 0. For several processes, run the same app under gunicorn
(see :mod:`baseplate_events.collector`).
"""
from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import ConfigError
from .intake import DEFAULT_MAX_BODY, DEFAULT_REPLAY_WINDOW
from .settings import SINKS

__all__ = ["add_arguments", "main", "serve", "settings_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every collector command takes (this one and ``python -m demo_app.collector``)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    parser.add_argument("--key", action="append", default=[], metavar="NAME=BASE64",
                        help="a signing key; repeat for more")
    parser.add_argument("--publisher-config", metavar="INI",
                        help="also take the keys of every [event-publisher:*] section")
    parser.add_argument("--replay-window", type=float, default=DEFAULT_REPLAY_WINDOW,
                        metavar="SECONDS", help="how far a request's Date may be off")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                        help="largest body, compressed or decompressed")
    parser.add_argument("--schema", metavar="MODULE:STRUCT",
                        help="the generated Thrift class of your v2 events: strict checks "
                             "and field names (e.g. shop.ttypes:Event)")
    parser.add_argument("--uuid-field", metavar="ID",
                        help="the id of the top-level field holding each v2 event's uuid")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    parser.add_argument("--verbose", action="store_true", help="log every request")


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
          on_stop: Callable[[], None], watch_parent: Optional[int] = None) -> int:
    """Serve ``app`` with waitress in this thread until SIGTERM or SIGINT; then ``on_stop()``."""
    import waitress

    from .app import DRAIN_FACTOR

    server: Any = waitress.create_server(
        app, host=args.host, port=args.port, threads=args.threads,
        # waitress reads the whole body before the app runs: past this it
        # answers 413 itself, and the app refuses what is over --max-body.
        max_request_body_size=DRAIN_FACTOR * args.max_body + 1,
        clear_untrusted_proxy_headers=True)

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        # waitress's loop runs in this (main) thread; leaving it is how it stops,
        # the same way it handles Ctrl-C itself.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if watch_parent is not None:
        import os
        import threading
        import time

        def watch() -> None:
            while os.getppid() == watch_parent:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    print(banner(f"http://{args.host}:{server.effective_port}"), flush=True)
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        server.close()
        server.task_dispatcher.shutdown()
        on_stop()
    print("collector stopped", flush=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baseplate_events.collector",
                                     description="The event collector, served by waitress.")
    add_arguments(parser)
    parser.add_argument("--sink", choices=SINKS, default="sqlite",
                        help="where accepted events go (default: sqlite)")
    parser.add_argument("--option", action="append", default=[], metavar="SINK.NAME=VALUE",
                        help="a sink option, e.g. sqlite.path=events.db or "
                             "jsonl.directory=/var/lib/events; repeat for more")
    args = parser.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO)
    settings = settings_from_args(args)
    settings["sink"] = args.sink
    for option in args.option:
        name, sep, value = option.partition("=")
        if not sep or "." not in name:
            parser.error(f"--option: expected SINK.NAME=VALUE, got {option!r}")
        settings[name.strip()] = value
    from .app import make_configurator
    from .schema import SchemaError
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
    return serve(
        config.make_wsgi_app(), args,
        lambda url: f"collector listening on {url} (keys: {', '.join(names)}; sink: {sink})",
        collector.close)


if __name__ == "__main__":
    sys.exit(main())
