"""gunicorn settings for the collector.

Use them with ``gunicorn -c python:baseplate_events.collector.gunicorn_conf``.

What it does, in gunicorn's master:

- Prometheus multiprocess mode. Every worker writes its figures to files in
  a private directory, and the master serves their sums once per instance
  at ``BASEPLATE_EVENTS_COLLECTOR_METRICS`` (``HOST:PORT``, from the
  environment; without it, no metrics are served). The directory is
  ``$PROMETHEUS_MULTIPROC_DIR`` when set (checked as the publisher's spool
  is: this user's, nobody else's) or a fresh one under the temporary
  directory, removed at exit; it is emptied at start, so that no figure of
  an earlier run is added in. A worker that exits leaves its counters in the
  sums; its gauges go (``sink_ready`` is the lowest of the live workers).
- Each worker settles its heap once the app is loaded (``post_worker_init``:
  ``heap.settle_heap``, as ``python -m baseplate_events.collector``
  does before it serves).
- The workers' timeouts: ``timeout = 30`` (a worker silent that long is
  restarted; a batch waits at most 2.5 s for its sink) and
  ``graceful_timeout = 10`` (a stopping worker finishes its batches).

It is set up when gunicorn reads this file, before the app is loaded, so
``--preload`` works too. Command-line flags override these settings; put
nginx in front of gunicorn (see the collector's documentation).
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import sys
import tempfile
from typing import Any, Optional, Tuple

from publisher.paths import open_private_directory

#: the environment variable naming where the master serves metrics (HOST:PORT)
METRICS_ENV = "BASEPLATE_EVENTS_COLLECTOR_METRICS"

timeout = 30
graceful_timeout = 10


def _multiprocess_directory() -> str:
    """The private, emptied directory of the workers' metric files (set in the environment)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.close(open_private_directory(given))
        directory = given
    else:
        directory = tempfile.mkdtemp(prefix="baseplate-events-collector-metrics-")
        atexit.register(_remove, directory, os.getpid())
    for stale in glob.glob(os.path.join(glob.escape(directory), "*.db")):
        os.unlink(stale)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _remove(directory: str, master: int) -> None:
    """Remove the directory at the master's exit (a worker runs the same hooks at its own)."""
    if os.getpid() == master:
        shutil.rmtree(directory, ignore_errors=True)


def _metrics_address() -> Optional[Tuple[str, int]]:
    """``BASEPLATE_EVENTS_COLLECTOR_METRICS``, checked before anything starts."""
    from .metrics import parse_address

    text = os.environ.get(METRICS_ENV, "").strip()
    if not text:
        return None
    try:
        return parse_address(text)
    except ValueError as exc:
        print(f"collector: {METRICS_ENV}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


# The directory first: prometheus_client picks multiprocess mode when it is first
# imported (parsing the address imports it), and the workers inherit that choice.
MULTIPROCESS_DIRECTORY = _multiprocess_directory()
METRICS_ADDRESS = _metrics_address()


def when_ready(server: Any) -> None:
    """Serve the workers' summed metrics from the master, if asked for."""
    if METRICS_ADDRESS is None:
        return
    from .metrics import serve_metrics

    try:
        _, url = serve_metrics(None, METRICS_ADDRESS)
    except OSError as exc:
        print(f"collector: {METRICS_ENV}: cannot listen on {METRICS_ADDRESS[0]}:"
              f"{METRICS_ADDRESS[1]}: {exc.strerror}", file=sys.stderr, flush=True)
        server.halt(reason="cannot serve metrics", exit_status=2)
    print(f"collector metrics on {url} (every worker's figures, summed)", file=sys.stderr,
          flush=True)


def post_worker_init(worker: Any) -> None:
    """The app is loaded in this worker: freeze what it made, tune the collector and malloc."""
    from .heap import settle_heap

    settle_heap()


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges leave the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
