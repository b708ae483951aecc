"""The collector's handling of one batch, apart from any web framework.

:class:`Collector` takes the path, the headers and the body of a POST and
returns the status and JSON answer: the checks of
:mod:`~baseplate_events.collector.intake`, the decoding of
:mod:`~baseplate_events.collector.batches`, then the sink
(:mod:`~baseplate_events.collector.sinks`). The Pyramid app
(:mod:`~baseplate_events.collector.app`) reads the request and writes the
answer around it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple
from typing import runtime_checkable

from .batches import EventReader, MalformedBatch, Refusal, RefusedEvents, decode_batch
from .intake import Refused, check_batch
from .metrics import CollectorMetrics
from .settings import CollectorSettings
from .sinks import Sink, SinkUnavailable

__all__ = ["PATHS", "PROBE_INTERVAL", "Answer", "Collector", "Journal", "SinkHealth"]

logger = logging.getLogger(__name__)

PATHS = {"/v1": "1", "/v2": "2", "/v2j": "2j"}
Answer = Tuple[int, Dict[str, Any]]

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
            probe = getattr(sink, "probe", None)
            if callable(probe):
                probe()
            elif not sink.ready():
                raise SinkUnavailable("the sink says it is not ready")
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


@runtime_checkable
class Journal(Protocol):
    """What a sink may also keep for a page: answers by status, and refused events."""

    def count_response(self, status: int) -> None: ...

    def record_refusals(self, stream: str, refusals: Sequence[Mapping[str, Any]],
                        received_ms: int) -> None: ...


class Collector:
    """The app's one object: settings, how v2 events are read, the sink, the clock.

    :param make_sink: how to make the sink again; given, a process forked after
        the app was made (``gunicorn --preload``) makes its own sink on first
        use rather than share the parent's connections, which SQLite and
        librdkafka forbid.
    """

    def __init__(self, settings: CollectorSettings, reader: EventReader, sink: Sink,
                 clock: Callable[[], float] = time.time,
                 make_sink: Optional[Callable[[], Sink]] = None) -> None:
        self.settings = settings
        self.reader = reader
        self.clock = clock
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
                    self._sink = self._make_sink()
                    self._pid = os.getpid()
        return self._sink

    def close(self) -> None:
        """Close the sink, if this process made it (a fork leaves the parent's alone)."""
        if self._pid == os.getpid():
            self._sink.close()

    def describe_sink(self) -> str:
        """The sink and where it keeps events, for the start line (``sqlite /var/lib/...``)."""
        describe = getattr(self._sink, "describe", None)
        return describe() if callable(describe) else self.settings.sink

    @property
    def journal(self) -> Optional[Journal]:
        sink = self._sink
        return sink if isinstance(sink, Journal) else None

    def take(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Check, decode and store one batch; the status and JSON answer (never raises)."""
        received_ms = int(self.clock() * 1000)
        stream = "v" + PATHS.get(path, "?")
        try:
            status, answer = self._take(path, headers, body, received_ms)
        except Refused as refusal:
            status, answer = refusal.answer()
        except Exception as exc:  # a bug: 503 keeps the batch at the publisher, loudly
            logger.exception("collector: failed to handle a batch")
            status, answer = 503, {"error": f"internal error: {type(exc).__name__}"}
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
              ) -> Answer:
        version = PATHS.get(path)
        if version is None:
            raise Refused(404, f"no such endpoint {path[:64]!r}; POST to /v1, /v2 or /v2j")
        _, plain = check_batch(headers, body, self.settings.keys, self.clock(),
                               self.settings.replay_window, self.settings.max_body)
        try:
            events = decode_batch(version, plain, self.reader, received_ms,
                                  getattr(self.sink, "reads_documents", True))
        except MalformedBatch as exc:
            raise Refused(400, f"not a v{version} batch: {exc}") from None
        except RefusedEvents as exc:
            self.metrics.events_refused.labels("invalid").inc(len(exc.refusals))
            raise Refused(422, str(exc), refused=[r.as_dict() for r in exc.refusals]) from None
        self.metrics.batch_events.observe(len(events))
        started = time.monotonic()
        try:
            reasons = self.sink.store("v" + version, events)
        except SinkUnavailable as exc:
            logger.warning("collector: sink unavailable, answering 503: %s", exc)
            self.metrics.sink_unavailable.inc()
            self.health.failed(str(exc))
            raise Refused(503, f"the sink is unavailable: {exc}") from None
        except Exception as exc:  # a sink bug: never a 500, which would dead-letter good events
            logger.exception("collector: the sink failed on a batch")
            raise Refused(503, f"the sink failed: {type(exc).__name__}") from None
        finally:
            self.metrics.store_seconds.observe(time.monotonic() - started)
        self.health.succeeded()
        refusals = [Refusal(i, reason, events[i].uuid)
                    for i, reason in enumerate(reasons) if reason is not None]
        if refusals:
            self.metrics.events_refused.labels("sink").inc(len(refusals))
            raise Refused(422, str(RefusedEvents(refusals, len(events))),
                          refused=[r.as_dict() for r in refusals])
        duplicates = self.sink.duplicates() if hasattr(self.sink, "duplicates") else 0
        return 200, {"accepted": len(events) - duplicates, "duplicates": duplicates}

    def _record(self, stream: str, refused: List[Dict[str, Any]], received_ms: int) -> None:
        journal = self.journal
        if journal is None:
            return
        try:
            journal.record_refusals(stream, refused, received_ms)
        except Exception:  # the journal is for the page; never let it cost the answer
            logger.exception("collector: failed to record refused events")

    def count(self, status: int) -> None:
        journal = self.journal
        if journal is None:
            return
        try:
            journal.count_response(status)
        except Exception:
            logger.exception("collector: failed to count a response")
