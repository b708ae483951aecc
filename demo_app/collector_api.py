"""The demo collector's JSON: ``GET /api/events`` and ``GET /api/stats``, which the page polls.

``/api/events`` lists what the SQLite sink holds, the last stored first:
``total``, ``duplicates``, ``counts`` (per source and action), ``responses``
(answers by status since the database was made), ``events`` and ``refused``
(the latest refused events, with their reasons), and ``next``. With
``?limit=N`` a page holds at most N events (and N refused events); ``next`` is
then the cursor of the following, older page (``?limit=N&before=NEXT``), or
null on the page that holds the oldest event.

``/api/stats`` is the page's picture: ``now_ms``; ``rates``, the answers of
each of the last ten minutes' seconds (:mod:`demo_app.answer_tally`);
``counts`` per stream, source and action (the :data:`SHOWN_COUNTS` with the
most events; ``counts_left_out`` says how many more there are); ``delays``, the distribution of
put-to-stored milliseconds over the last :data:`DELAY_SAMPLE` events stored.

Both read through :class:`~demo_app.store_reader.StoreReader`: off the
sink's connection, with the totals and counts of a big file a little old.
"""
from __future__ import annotations

import bisect
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyramid.request import Request
from pyramid.response import Response

from .answer_tally import AnswerTally
from .page_store import EventCursor
from .store_reader import StoreReader

__all__ = ["DELAY_BUCKETS", "DELAY_SAMPLE", "SHOWN_COUNTS", "delay_distribution", "events_view",
           "stats_view"]

#: the stored events whose delays the page shows
DELAY_SAMPLE = 1000
#: rows of counts the page shows (the most events first)
SHOWN_COUNTS = 50
#: upper bounds (ms, exclusive) and names of the delay distribution's buckets
DELAY_BUCKETS: Sequence[Tuple[float, str]] = (
    (0, "< 0 (clock ahead)"),
    (10, "0–10 ms"),
    (100, "10–100 ms"),
    (1000, "0.1–1 s"),
    (10_000, "1–10 s"),
    (60_000, "10–60 s"),
    (600_000, "1–10 min"),
    (float("inf"), "≥ 10 min"),
)


def _json(document: Dict[str, Any], status: int = 200) -> Response:
    return Response(body=json.dumps(document).encode("utf-8"), status=status,
                    content_type="application/json", charset=None)


def _limit(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 9 and int(text) >= 1):
        raise ValueError(f"limit: expected a whole number of events, 1 or more, "
                         f"got {text[:40]!r}")
    return int(text)


def events_view(request: Request) -> Response:
    store: StoreReader = request.registry["store_reader"]
    try:
        query = request.GET
    except UnicodeDecodeError:
        return _json({"error": "limit, before: the query string is not UTF-8 once "
                               "percent-decoded; give ?limit=N&before=NEXT in ASCII digits"},
                     status=400)
    try:
        limit = _limit(query.get("limit"))
        before = query.get("before")
        cursor = None if before is None else EventCursor.parse(before)
    except ValueError as exc:
        return _json({"error": str(exc)}, status=400)
    page = store.newest_events(limit, cursor)
    document = store.summary()
    document["events"] = page.events
    document["refused"] = store.refusals(limit)
    document["next"] = None if page.next is None else str(page.next)
    return _json(document)


def delay_distribution(delays: List[float]) -> Dict[str, Any]:
    """Delays (ms) as bucket counts and percentiles (None without a delay)."""
    counts = [0] * len(DELAY_BUCKETS)
    bounds = [bound for bound, _ in DELAY_BUCKETS]
    for delay in delays:
        counts[bisect.bisect_right(bounds, delay)] += 1
    ordered = sorted(delays)

    def percentile(share: float) -> Optional[float]:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return {
        "events": len(ordered),
        "buckets": [{"label": label, "count": count}
                    for (_, label), count in zip(DELAY_BUCKETS, counts)],
        "p50_ms": percentile(0.5),
        "p90_ms": percentile(0.9),
        "max_ms": ordered[-1] if ordered else None,
    }


def stats_view(request: Request) -> Response:
    collector = request.registry["collector"]
    store: StoreReader = request.registry["store_reader"]
    tally: AnswerTally = request.registry["answer_tally"]
    summary = store.summary()
    counts = store.stream_counts()
    return _json({
        "now_ms": int(collector.clock() * 1000),
        "total": summary["total"],
        "duplicates": summary["duplicates"],
        "rates": tally.window(),
        "counts": counts[:SHOWN_COUNTS],
        "counts_left_out": max(0, len(counts) - SHOWN_COUNTS),
        "delays": delay_distribution(store.delays(DELAY_SAMPLE)),
    })
