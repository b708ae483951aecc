"""The collector's answers, second by second, for the page's chart.

Each answer to a ``POST /v1``, ``/v2`` or ``/v2j`` is counted in the second it
was given: by status (batches), and by what it says of the events in it:

- ``stored``: a 200's ``accepted`` (events new to the sink);
- ``duplicates``: a 200's ``duplicates`` (events the sink had already);
- ``refused_events``: the events a 422 names (its ``refused`` list);
- ``refused_requests``: requests refused whole, without a look at their
  events (400, 401, 403, 404, 411, 413, 415: a bad signature, date, body);
- ``retry``: 503s (the sink was unavailable; the publisher sends again).

The tally reads the answers, not the sink's table of refused events, which
keeps only the latest 1,000: a flood of refusals still shows at its true rate.
It also keeps the latest :data:`KEEP_REQUESTS` requests refused whole, with
the error each was answered (the sink's table holds only events a 422 named).
It lives in this process's memory, for the last :data:`KEEP_SECONDS`; a
restarted collector starts its chart afresh.
"""
from __future__ import annotations

import json
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List

from pyramid.events import NewResponse

from baseplate_events.collector.service.handler import PATHS

__all__ = ["KEEP_REQUESTS", "KEEP_SECONDS", "AnswerTally", "SecondTally", "count_answer"]

#: seconds of answers kept (the chart's ten minutes)
KEEP_SECONDS = 600
#: requests refused whole kept, with their errors, for the page
KEEP_REQUESTS = 50
#: an error is cut to this many characters in the list of refused requests
ERROR_CHARS = 500


@dataclass
class SecondTally:
    """What the collector answered within one second."""

    stored: int = 0
    duplicates: int = 0
    refused_events: int = 0
    refused_requests: int = 0
    retry: int = 0
    statuses: Counter = field(default_factory=Counter)  # status -> batches


class AnswerTally:
    """Answers per second, for the last :data:`KEEP_SECONDS`; thread-safe."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._seconds: Dict[int, SecondTally] = {}
        self._requests: Deque[Dict[str, Any]] = deque(maxlen=KEEP_REQUESTS)
        self._lock = threading.Lock()

    def add(self, status: int, answer: Dict[str, Any], stream: str = "") -> None:
        """Count one answer, given now: its status, its JSON body and the batch's stream."""
        now = self.clock()
        second = int(now)
        with self._lock:
            tally = self._seconds.get(second)
            if tally is None:
                tally = self._seconds[second] = SecondTally()
                for old in [s for s in self._seconds if s <= second - KEEP_SECONDS]:
                    del self._seconds[old]
            tally.statuses[status] += 1
            if status == 200:
                tally.stored += _count(answer.get("accepted"))
                tally.duplicates += _count(answer.get("duplicates"))
            elif status == 422:
                refused = answer.get("refused")
                tally.refused_events += len(refused) if isinstance(refused, list) else 1
            elif 400 <= status < 500:
                tally.refused_requests += 1
                error = answer.get("error")
                self._requests.appendleft({
                    "received_ms": int(now * 1000), "stream": stream, "status": status,
                    "error": str(error)[:ERROR_CHARS] if error is not None else "",
                })
            elif status >= 500:
                tally.retry += 1

    def window(self, seconds: int = KEEP_SECONDS) -> Dict[str, Any]:
        """The last ``seconds`` (this one included), one entry per second, oldest first.

        ``start`` is the first second (since the epoch); ``stored``,
        ``duplicates``, ``refused_events``, ``refused_requests`` and ``retry``
        are lists of ``seconds`` counts; ``statuses`` maps each status to the
        batches answered with it in the window; ``requests`` lists the latest
        requests refused whole (``received_ms``, ``stream``, ``status``,
        ``error``), the last first, whenever they came.
        """
        end = int(self.clock())
        start = end - seconds + 1
        series: Dict[str, List[int]] = {name: [0] * seconds for name in
                                         ("stored", "duplicates", "refused_events",
                                          "refused_requests", "retry")}
        statuses: Counter = Counter()
        with self._lock:
            for second, tally in self._seconds.items():
                if start <= second <= end:
                    at = second - start
                    for name, counts in series.items():
                        counts[at] = getattr(tally, name)
                    statuses.update(tally.statuses)
            requests = list(self._requests)
        return {"start": start, "seconds": seconds, **series,
                "statuses": {str(status): statuses[status] for status in sorted(statuses)},
                "requests": requests}


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def count_answer(event: NewResponse) -> None:
    """Pyramid subscriber: count each answer to a batch in the registry's tally."""
    request = event.request
    if request.method != "POST" or request.path_info not in PATHS:
        return
    tally: AnswerTally = request.registry["answer_tally"]
    response = event.response
    answer: Any = {}
    if response.content_type == "application/json":
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = {}
    tally.add(response.status_code, answer if isinstance(answer, dict) else {},
              "v" + PATHS[request.path_info])
