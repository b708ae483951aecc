"""The Kafka sink's rounds: batches that arrive while one is in flight go out together.

librdkafka reports every message's delivery. Handed to Python, each
successful report cost 0.4-0.5 µs of CPU per event (a ``Message`` object
and a call), a tenth of what decoding the event costs, and with several
threads polling one producer they also woke each other for the other's
reports. So the producer hands Python only the reports of failed messages
(``delivery.report.only.error``), and a batch knows its messages are
acknowledged when the producer holds no message at all: ``len(producer)``
is 0.

With one producer shared by every request thread, that is true of one
batch only if no other batch is in flight, hence rounds: the first thread
to store a batch leads a round, which produces every batch waiting at its
start and waits until the producer is empty; batches arriving meanwhile
wait for the next round, led by the thread of the youngest of them. A
failed report goes to its own batch, as before. Each batch is bounded by its
own deadline: a round waits for the broker until its youngest batch's, and
an older batch still unsettled at its own fails (a 503: the publisher sends
it again) while the round goes on for the others.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from confluent_kafka import KafkaError, KafkaException

from . import SinkUnavailable, StoredEvent
from .kafka_reports import MESSAGE_ERRORS, DeliveryReports, ProducerBroken, breaks_producer
from .kafka_settings import POLL_SLICE

__all__ = ["Pending", "Rounds", "run_round"]


class Pending:
    """One ``store`` call's batch, as it waits for a round and is settled by it."""

    __slots__ = ("deadline", "events", "failure", "reports", "settled", "topic")

    def __init__(self, topic: str, events: Sequence[StoredEvent], deadline: float) -> None:
        self.topic = topic
        self.events = events
        #: time.monotonic() by which the batch must be settled
        self.deadline = deadline
        #: the failed delivery reports of its messages
        self.reports = DeliveryReports()
        #: set when the round that took it has ended
        self.settled = False
        #: why its round failed as a whole (raised by the thread that stores the batch)
        self.failure: Optional[Exception] = None


class Rounds:
    """One producer's rounds (see the module docstring). Thread-safe."""

    def __init__(self, producer: Any) -> None:
        #: the confluent_kafka Producer whose rounds these are (a new producer, new rounds)
        self.producer = producer
        self._changed = threading.Condition()
        self._waiting: List[Pending] = []
        self._leading = False
        #: how many rounds were led (a test reads it)
        self.count = 0

    def send(self, pending: Pending, run: Callable[[List[Pending]], None],
             expired: Callable[[Pending, bool], Exception]) -> None:
        """Return once ``pending`` was settled by a round; ``run(batches)`` runs a round.

        The thread of the youngest batch waiting leads the next round, so the
        round may wait for the broker until that batch's deadline, the latest
        of its batches; another batch's thread gives up at its own deadline
        and fails it with ``expired(pending, taken)`` (``taken``: by a round
        still in flight, else still waiting for one, which it then leaves).
        ``run`` may fail one batch by setting its ``failure``; if it raises,
        every batch of its round not yet failed fails with that error (a copy
        for each).
        """
        with self._changed:
            self._waiting.append(pending)
            while not pending.settled:
                waiting = any(batch is pending for batch in self._waiting)
                if waiting and not self._leading and self._waiting[-1] is pending:
                    break  # this thread leads the next round
                remaining = pending.deadline - time.monotonic()
                if remaining <= 0:
                    if waiting:
                        self._waiting.remove(pending)
                        self._changed.notify_all()  # the youngest left may now lead
                    if pending.failure is None:
                        pending.failure = expired(pending, not waiting)
                    return
                self._changed.wait(remaining)
            else:
                return
            self._leading = True
            batches, self._waiting = self._waiting, []
            self.count += 1
        try:
            run(batches)
        except BaseException as exc:  # ProducerBroken, SinkUnavailable: the whole round's
            # An interruption of the leading thread (a request timeout raised in it) is
            # no answer for the other batches: never settled without a failure.
            for batch in batches:
                if batch.failure is None:
                    batch.failure = _copy(exc) if isinstance(exc, Exception) else SinkUnavailable(
                        f"kafka: the round sending this batch was interrupted ({exc!r})")
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._changed:
                for batch in batches:
                    batch.settled = True
                self._leading = False
                self._changed.notify_all()


def _copy(exc: Exception) -> Exception:
    """The same error for another thread to raise (one traceback per thread)."""
    if isinstance(exc, SinkUnavailable):
        return type(exc)(str(exc))
    return exc


def run_round(producer: Any, batches: List[Pending], brokers: str, bound: float,
              closed: Callable[[], bool]) -> None:
    """Produce every batch of a round, then wait until ``producer`` holds no message.

    Only failed messages are reported (``delivery.report.only.error``), each
    to its own batch's :class:`DeliveryReports`. A batch whose topic
    librdkafka refuses fails alone (its ``failure``).

    :param brokers: ``kafka.bootstrap_servers``, for the errors.
    :param bound: how long a batch may wait in all, for the errors.
    :param closed: whether the sink is closing: a closing producer counts no
        message, acknowledged or not.
    :raises SinkUnavailable: the producer still held messages at the round's
        deadline, or the sink closed meanwhile.
    :raises ProducerBroken: librdkafka's answer means the producer must be replaced.
    """
    deadline = max(pending.deadline for pending in batches)  # the youngest's: its leader's
    for pending in batches:
        events, reports = pending.events, pending.reports
        # One call for the whole batch (0.2-0.3 µs of CPU less per event than a produce()
        # each); an event it did not take (queue full, too large, fatal state) gets an
        # "_error" and is produced again alone, which waits for room or says why.
        messages: List[Dict[str, object]] = [{"value": e.raw, "key": e.uuid} for e in events]
        try:
            queued = producer.produce_batch(pending.topic, messages,
                                            on_delivery=reports.on_delivery)
        except (BufferError, KafkaException):  # none queued: each alone says what it was
            queued, messages = 0, [{"_error": True}] * len(events)
        try:
            if queued < len(events):
                for event, message in zip(events, messages):
                    if "_error" in message:
                        produce_alone(producer, pending.topic, event, reports, deadline,
                                      brokers)
        except ProducerBroken:
            raise  # the producer is replaced: no batch of the round can be trusted to it
        except SinkUnavailable as exc:  # this batch's topic: the others still go
            pending.failure = exc
    while len(producer) > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            topics = ", ".join(sorted({pending.topic for pending in batches}))
            sent = sum(len(pending.events) for pending in batches)
            raise SinkUnavailable(  # the round's own messages, or a failed round's left over
                f"kafka: {min(len(producer), sent)} of {sent} messages to {topics} had no "
                f"delivery report after {bound:g} s (brokers {brokers})")
        _poll(producer, min(remaining, POLL_SLICE), brokers)
    if closed():  # set before the producer is closed, whose length then drops to 0
        raise SinkUnavailable("kafka: the sink closed while the batch was in flight; the "
                              "publisher sends it again")


def produce_alone(producer: Any, topic: str, event: StoredEvent, reports: DeliveryReports,
                  deadline: float, brokers: str) -> None:
    """Hand one event to librdkafka, waiting for room in its queue while there is time.

    :raises SinkUnavailable: the queue stayed full, or librdkafka refused the topic.
    :raises ProducerBroken: librdkafka's answer means the producer must be replaced.
    """
    while True:
        try:
            producer.produce(topic, event.raw, event.uuid, on_delivery=reports.on_delivery)
            return
        except BufferError:
            # queue.buffering.max.messages/kbytes reached: wait for reports.
            if time.monotonic() > deadline:
                raise SinkUnavailable(
                    f"kafka: the producer's queue stayed full (brokers {brokers}); event "
                    f"{event.uuid} not sent") from None
            _poll(producer, POLL_SLICE, brokers)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in MESSAGE_ERRORS:  # librdkafka's own size check
                reports.refuse(event.uuid.encode(), error)
                return
            problem = f"kafka: cannot produce to {topic}: {error.str()}"
            if breaks_producer(error):
                raise ProducerBroken(problem) from None
            raise SinkUnavailable(problem) from None


def _poll(producer: Any, timeout: float, brokers: str) -> None:
    """Serve the producer's reports and callbacks for up to ``timeout`` seconds.

    :raises ProducerBroken: confluent-kafka raised librdkafka's fatal error
        from ``poll`` (it does not go to ``error_cb``).
    :raises SinkUnavailable: ``poll`` raised anything else of Kafka's.
    """
    try:
        producer.poll(timeout)
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(exc)
        if isinstance(error, KafkaError) and breaks_producer(error):
            raise ProducerBroken(f"kafka: the producer failed: {reason}") from None
        raise SinkUnavailable(f"kafka: the producer failed: {reason} (brokers {brokers})"
                              ) from None
