"""The health report: queue depth, spool backlog, oldest spooled event, last successful send.

Written as JSON to ``health.path`` every ``health.interval`` seconds (atomically,
so a monitoring check never reads half a file) and logged as one line every
``health.log_interval`` seconds.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, Optional

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.health")

#: Each figure of the health file -> the metric (statsd name) that carries it
#: on ``/metrics``: gauges, and moments as Unix times (an age there is
#: ``time() - <name>_timestamp_seconds``). ``counters`` are the counters of
#: ``publisher.metrics.names``, each one ``<name>_total``; ``time``, ``pid``
#: and ``queue`` stamp the report itself (``queue`` is every metric's label).
ON_METRICS: Dict[str, str] = {
    "queue_depth": "queue.depth",
    "spool_events": "spool.events",
    "spool_bytes": "spool.bytes",
    "oldest_spooled_age_seconds": "spool.oldest",
    "last_success": "last_success",
    "seconds_since_last_success": "last_success",
    "batch_failed_tries": "batch.failed_tries",
}


def _iso(epoch: Optional[float]) -> Optional[str]:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def report(
    *,
    queue: str,
    queue_depth: int,
    spool_events: int,
    spool_bytes: int,
    oldest_spooled_ms: Optional[int],
    last_success: Optional[float],
    counters: Dict[str, int],
    now: Optional[float] = None,
    batch_failed_tries: int = 0,
) -> Dict[str, Any]:
    """The health document, as written to ``health.path``.

    :param queue: the full queue name (``/events-v2``).
    :param queue_depth: messages waiting in the queue.
    :param spool_events: events spooled and not yet accepted by the collector.
    :param spool_bytes: their size in bytes.
    :param oldest_spooled_ms: append time of the oldest of them (epoch ms), or None.
    :param last_success: when the collector last accepted a batch (epoch s), or None.
    :param counters: every counter the publisher keeps (``publisher.metrics.counters``).
    :param now: the time of the report (default: now).
    :param batch_failed_tries: failed POSTs in a row for the oldest unsent batch.
    :returns: a JSON-ready dict: ``time``, ``pid``, ``queue``, ``queue_depth``,
        ``spool_events``, ``spool_bytes``, ``oldest_spooled_age_seconds``,
        ``last_success``, ``seconds_since_last_success``, ``batch_failed_tries`` and
        ``counters``.
    """
    now = time.time() if now is None else now
    oldest_age = None if oldest_spooled_ms is None else max(0.0, now - oldest_spooled_ms / 1000)
    return {
        "time": _iso(now),
        "pid": os.getpid(),
        "queue": queue,
        "queue_depth": queue_depth,
        "spool_events": spool_events,
        "spool_bytes": spool_bytes,
        "oldest_spooled_age_seconds": None if oldest_age is None else round(oldest_age, 3),
        "last_success": _iso(last_success),
        "seconds_since_last_success": (
            None if last_success is None else round(now - last_success, 3)
        ),
        "batch_failed_tries": batch_failed_tries,
        "counters": counters,
    }


def line(doc: Dict[str, Any]) -> str:
    """The one-line form for the log.

    ``health: queue /events-v2 depth=0 spool=0 events/0 bytes oldest=-
    last_success=2026-11-28T16:20:01Z drained=120400 sent=120400 held=0 dead_letter=0
    dropped=0``
    """
    oldest = doc["oldest_spooled_age_seconds"]
    return (
        f"health: queue {doc['queue']} depth={doc['queue_depth']} "
        f"spool={doc['spool_events']} events/{doc['spool_bytes']} bytes "
        f"oldest={'-' if oldest is None else f'{oldest:.1f}s'} "
        f"last_success={doc['last_success'] or 'never'} "
        f"drained={doc['counters'].get('drained', 0)} "
        f"sent={doc['counters'].get('sent', 0)} "
        f"held={doc['counters'].get('held', 0)} "
        f"dead_letter={doc['counters'].get('dead_letter', 0)} "
        f"dropped={doc['counters'].get('dropped.spool_full', 0)}"
    )


def write(path: str, doc: Dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` atomically; a failure is logged, never raised."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(doc, f, sort_keys=True)
            f.write("\n")
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("health: cannot write %s: %s", path, exc)
