"""The collector's handling of one batch, apart from any web framework.

:class:`CollectorService` takes the path, the headers and the body of a POST and
returns the status and JSON answer: the checks of
:mod:`~baseplate_events.collector.service.intake`, the decoding of
:mod:`~baseplate_events.collector.decode.batches`, then the sink
(:mod:`~baseplate_events.collector.sinks`). The Pyramid app
(:mod:`~baseplate_events.collector.service.app`) reads the request and writes the
answer around it.

What each answer means, so that no event can stall a publisher's queue:

- 503 (with ``Retry-After``) only when the sink raised
  :class:`~baseplate_events.collector.sinks.SinkUnavailable` (its
  infrastructure: a disk full or read-only, a lock held too long, a broker
  down): the publisher waits and sends the same batch again.
- 422 for events refused for a reason of their own, each named, whatever
  raised it (a check, the parser, the sink's value checks).
- 500 for anything else raised while handling the batch: a collector bug on
  this batch, answered with the exception's type and message and logged with
  its traceback. The publisher bisects a repeating 500 and sets an event
  aside only once the collector has accepted others since.

500 and 503 log lines are rate-limited (:class:`RateLimitedLog`): one a
minute per reason, with how many there were.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ...errors import ConfigError
from ..decode.batches import EventReader, MalformedBatch, Refusal, RefusedEvents, decode_batch
from .intake import Refused, check_batch
from .metrics import CollectorMetrics
from .settings import CollectorSettings
from ..sinks import Sink, SinkUnavailable

__all__ = ["PATHS", "PROBE_INTERVAL", "BatchAnswer", "CollectorService", "RateLimitedLog",
           "SinkHealth", "internal_error"]

logger = logging.getLogger("baseplate_events.collector.service")  # the name users configure

PATHS = {"/v1": "1", "/v2": "2", "/v2j": "2j"}
BatchAnswer = Tuple[int, Dict[str, Any]]

#: the shortest time between two probes of a sink that failed
PROBE_INTERVAL = 2.0


class SinkHealth:
    """Whether the sink takes batches, as ``/readyz`` says: the truth after a failure.

    A batch the sink could not take marks it unavailable. From then on
    :meth:`ready` is False and starts a probe of the sink itself (its
    ``probe()``: a write in a savepoint, a probe file, broker metadata), in a
    thread of its own and at most every ``interval`` seconds, so that a probe
    neither waits behind batches nor makes ``/readyz`` wait. A probe, or a
    batch, that succeeds makes it available again, without waiting for the
    traffic a load balancer no longer sends.
    """

    def __init__(self, sink: Callable[[], Sink], metrics: CollectorMetrics,
                 interval: float = PROBE_INTERVAL,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._metrics = metrics
        self.interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: why the sink is unavailable, or None while it takes batches
        self.problem: Optional[str] = None
        self._probing = False
        self._last_probe = float("-inf")
        #: how many probes were started (each one a thread)
        self.probes = 0

    @property
    def probing(self) -> bool:
        """Whether a probe is running now."""
        return self._probing

    def failed(self, problem: str) -> None:
        """A batch could not be stored."""
        with self._lock:
            if self.problem is None:
                self._last_probe = self._monotonic()  # the failure was a probe of its own
            self.problem = problem
        self._metrics.sink_ready.set(0)

    def succeeded(self) -> None:
        """A batch, or a probe, was stored."""
        if self.problem is None:
            return
        with self._lock:
            was, self.problem = self.problem, None
        if was is not None:
            logger.warning("collector: the sink takes batches again (it failed with: %s)", was)
        self._metrics.sink_ready.set(1)

    def ready(self) -> bool:
        """Whether the sink takes batches (never blocks; may start a probe)."""
        if self.problem is None:
            try:
                return bool(self._sink().ready())
            except Exception:
                logger.exception("collector: the sink's readiness check failed")
                return False
        with self._lock:
            due = not self._probing and self._monotonic() - self._last_probe >= self.interval
            if due:
                self._probing = True
                self._last_probe = self._monotonic()
                self.probes += 1
        if due:
            threading.Thread(target=self._probe, name="sink-probe", daemon=True).start()
        return False

    def _probe(self) -> None:
        try:
            sink = self._sink()
            sink.probe()
        except SinkUnavailable as exc:
            logger.warning("collector: the sink is still unavailable: %s", exc)
            with self._lock:
                self.problem = str(exc)
        except Exception:
            logger.exception("collector: probing the sink failed")
        else:
            self.succeeded()
        finally:
            with self._lock:
                self._probing = False
                self._last_probe = self._monotonic()


#: runs of digits and hex (uuids, counts, offsets): one reason, whatever their values
_VARYING = re.compile(r"[0-9a-fA-F]*[0-9][0-9a-fA-F-]*")


class RateLimitedLog:
    """Log lines rate-limited per reason: the first at once, then one per ``interval``.

    A collector in trouble answers every batch of every publisher the same
    way; one line a minute per reason, saying how many times it happened,
    keeps the log readable. Digits and hex in a reason (uuids, counts) do not
    make it another reason.

    :param clock: seconds, monotonic; tests pass a fake one.
    """

    #: reasons remembered at most (the oldest forgotten first)
    MAX_REASONS = 256

    def __init__(self, log: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        #: reason → (when its last line was written, times held back since, that line's
        #: level, message and arguments)
        self._seen: Dict[str, Tuple[float, int, int, str, Tuple[Any, ...]]] = {}

    def __call__(self, level: int, reason: str, message: str, *args: Any,
                 exc_info: Any = None) -> bool:
        """Log ``message % args`` and the count, unless ``reason`` was logged within the
        interval (then only counted); whether it was logged."""
        key = _VARYING.sub("#", reason)
        now = self.clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval:
                self._seen[key] = (last[0], last[1] + 1, *last[2:])
                return False
            times = 1 + (last[1] if last is not None else 0)
            self._seen.pop(key, None)
            if len(self._seen) >= self.MAX_REASONS:
                del self._seen[next(iter(self._seen))]
            self._seen[key] = (now, 0, level, message, args)
        self.log.log(level, message + " (%d time%s in the last %s)", *args, times,
                     "" if times == 1 else "s",
                     "minute" if self.interval == 60 else f"{self.interval:g} s",
                     exc_info=exc_info)
        return True

    def flush(self) -> None:
        """Log the count of every reason held back since its last line (at shutdown)."""
        with self._lock:
            held = [entry for entry in self._seen.values() if entry[1]]
            self._seen.clear()
        for _, times, level, message, args in held:
            self.log.log(level, message + " (%d more time%s before stopping)", *args, times,
                         "" if times == 1 else "s")


def internal_error(exc: BaseException) -> Tuple[str, str]:
    """(the 500 answer's reason, the reason's key for the rate limit: where it was raised)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    message = str(exc)
    reason = f"internal error: {type(exc).__name__}" + (f": {message[:200]}" if message else "")
    return reason, f"{type(exc).__name__} at {where}"


class CollectorService:
    """The app's one object: settings, how v2 events are read, the sink, the clock.

    :param make_sink: how to make the sink again; given, a process forked after
        the app was made (``gunicorn --preload``) makes its own sink on first
        use rather than share the parent's connections, which SQLite and
        librdkafka forbid.
    """

    def __init__(self, settings: CollectorSettings, reader: EventReader, sink: Sink,
                 clock: Callable[[], float] = time.time,
                 make_sink: Optional[Callable[[], Sink]] = None,
                 log_clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.reader = reader
        self.clock = clock
        #: the 500 and 503 log lines, one a minute per reason
        self.rate_limited = RateLimitedLog(logger, clock=log_clock)
        self._sink = sink
        self._make_sink = make_sink
        self._pid = os.getpid()
        self._fork_lock = threading.Lock()
        self.metrics = CollectorMetrics()
        self.health = SinkHealth(lambda: self.sink, self.metrics)

    @property
    def sink(self) -> Sink:
        """This process's sink.

        :raises SinkUnavailable: a forked process could not make its own.
        """
        if self._make_sink is not None and self._pid != os.getpid():
            with self._fork_lock:
                if self._pid != os.getpid():
                    try:
                        self._sink = self._make_sink()
                    except SinkUnavailable:
                        raise
                    except (OSError, ConfigError) as exc:  # the files' state, not the batch's
                        raise SinkUnavailable(f"this process cannot make its sink: "
                                              f"{exc}") from None
                    self._pid = os.getpid()
        return self._sink

    def close(self) -> None:
        """Close the sink, if this process made it (a fork leaves the parent's alone)."""
        self.rate_limited.flush()
        if self._pid == os.getpid():
            self._sink.close()

    def describe_sink(self) -> str:
        """The sink and where it keeps events, for the start line (``sqlite /var/lib/...``)."""
        return self._sink.describe()

    def take(self, path: str, headers: Mapping[str, str], body: bytes) -> BatchAnswer:
        """Check, decode and store one batch; the status and JSON answer (never raises)."""
        received_ms = int(self.clock() * 1000)
        stream = "v" + PATHS.get(path, "?")
        try:
            status, answer = self._take(path, headers, body, received_ms)
        except Refused as refusal:
            status, answer = refusal.answer()
        except SinkUnavailable as exc:  # the sink cannot take the batch now: 503, Retry-After
            status, answer = self._unavailable(exc)
        except Exception as exc:  # a bug on this batch: 500, which the publisher bisects
            reason, where = internal_error(exc)
            self.rate_limited(logging.ERROR, where, "collector: answered 500 to a batch on %s: %s",
                              stream, reason, exc_info=exc)
            status, answer = 500, {"error": reason}
        if status == 422:
            self._record(stream, answer["refused"], received_ms)
        self._count_answer(status, answer)
        return status, answer

    def _count_answer(self, status: int, answer: Mapping[str, Any]) -> None:
        metrics = self.metrics
        if status == 200:
            metrics.events.labels("accepted").inc(answer.get("accepted", 0))
            metrics.events.labels("duplicate").inc(answer.get("duplicates", 0))
        elif 400 <= status < 500 and status != 422:
            metrics.batch_refused(status)

    def _take(self, path: str, headers: Mapping[str, str], body: bytes, received_ms: int
              ) -> BatchAnswer:
        version = PATHS.get(path)
        if version is None:
            raise Refused(404, f"no such endpoint {path[:64]!r}; POST to /v1, /v2 or /v2j")
        _, plain = check_batch(headers, body, self.settings.keys, self.clock(),
                               self.settings.replay_window, self.settings.max_body)
        try:
            events = decode_batch(version, plain, self.reader, received_ms,
                                  self.sink.reads_documents)
        except MalformedBatch as exc:
            raise Refused(400, f"not a v{version} batch: {exc}") from None
        except RefusedEvents as exc:
            self.metrics.events_refused.labels("invalid").inc(len(exc.refusals))
            raise Refused(422, str(exc), refused=[r.as_dict() for r in exc.refusals]) from None
        self.metrics.batch_events.observe(len(events))
        started = time.monotonic()
        try:
            outcomes = self.sink.store("v" + version, events)  # SinkUnavailable: 503, see take
        finally:
            self.metrics.store_seconds.observe(time.monotonic() - started)
        self.health.succeeded()
        if len(outcomes) != len(events):
            raise RuntimeError(f"the sink gave {len(outcomes)} outcomes for {len(events)} events")
        refusals = [Refusal(i, outcome.reason or "refused by the sink", events[i].uuid)
                    for i, outcome in enumerate(outcomes) if outcome.kind == "refused"]
        if refusals:
            self.metrics.events_refused.labels("sink").inc(len(refusals))
            raise Refused(422, str(RefusedEvents(refusals, len(events))),
                          refused=[r.as_dict() for r in refusals])
        duplicates = sum(1 for outcome in outcomes if outcome.kind == "duplicate")
        return 200, {"accepted": len(events) - duplicates, "duplicates": duplicates}

    def _unavailable(self, exc: SinkUnavailable) -> BatchAnswer:
        self.metrics.sink_unavailable.inc()
        self.health.failed(str(exc))
        self.rate_limited(logging.WARNING, str(exc),
                          "collector: sink unavailable, answered 503: %s", exc)
        return 503, {"error": f"the sink is unavailable: {exc}"}

    def _record(self, stream: str, refused: List[Dict[str, Any]], received_ms: int) -> None:
        try:
            self.sink.record_refusals(stream, refused, received_ms)
        except Exception as exc:  # the journal is for the page; never let it cost the answer
            self.rate_limited(logging.WARNING, f"record {type(exc).__name__}: {exc}",
                              "collector: failed to record refused events: %s: %s",
                              type(exc).__name__, exc)

    def count(self, status: int) -> None:
        try:
            self.sink.count_response(status)
        except Exception as exc:  # as above; a locked database fails every count at once
            self.rate_limited(logging.WARNING, f"count {type(exc).__name__}: {exc}",
                              "collector: failed to count a response: %s: %s",
                              type(exc).__name__, exc)
