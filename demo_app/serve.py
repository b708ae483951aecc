"""Serve one of the demo apps with waitress: ``python -m demo_app.serve pyramid|flask ...``.

The runner starts each app in its own process with this, as a deployment
would run it under a WSGI server. With ``--port 0`` the kernel picks a free
port and the first line printed says which. SIGTERM or SIGINT stops the server
and closes the app's queue descriptors (the queues stay for the publisher).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Optional, Sequence

import waitress


def watch_parent(parent: int, on_orphaned: Callable[[], None]) -> None:
    """Call ``on_orphaned`` if the process that started us dies (no leftovers after a kill -9)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        on_orphaned()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _build(args: argparse.Namespace) -> "tuple[Any, Callable[[], None]]":
    sizes = dict(max_messages=args.max_messages, max_message_size=args.max_message_size)
    if args.app == "pyramid":
        from . import pyramid_app

        return pyramid_app.make_app(args.queue, **sizes), lambda: None
    from . import flask_app

    if not args.v1_queue:
        raise SystemExit("serve: the flask app needs --v1-queue")
    app = flask_app.make_app(args.queue, args.v1_queue, **sizes)
    return app, lambda: flask_app.close_legacy_queue(app)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_app.serve")
    parser.add_argument("app", choices=("pyramid", "flask"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--queue", required=True, help="v2 queue name (without /events-)")
    parser.add_argument("--v1-queue", help="legacy v1 queue name (flask app)")
    parser.add_argument("--max-messages", type=int, default=10)
    parser.add_argument("--max-message-size", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    app, close = _build(args)
    server: Any = waitress.create_server(app, host=args.host, port=args.port,
                                         threads=args.threads, clear_untrusted_proxy_headers=True)

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        # waitress's loop runs in this (main) thread; leaving it is how it stops,
        # the same way it handles Ctrl-C itself.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watch_parent(os.getppid(), lambda: os.kill(os.getpid(), signal.SIGTERM))
    print(f"{args.app} app listening on http://{args.host}:{server.effective_port}", flush=True)
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        server.close()
        close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
