"""A Kafka batch's delivery reports, and what each error means for the event and the producer.

:class:`DeliveryReports` gathers one ``store`` call's failed reports;
:func:`breaks_producer` says whether an error means the producer must be
replaced (then :class:`ProducerBroken` is raised, and :func:`retry_once`
tries the batch once more on the new producer); :func:`refusal` is the 422
reason of an event refused for an error of its own (:data:`MESSAGE_ERRORS`).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, Type, TypeVar

from confluent_kafka import KafkaError

from . import STORED, Outcome, SinkUnavailable, StoredEvent

__all__ = ["MESSAGE_ERRORS", "PRODUCER_ERRORS", "DeliveryReports", "ProducerBroken",
           "breaks_producer", "outcomes", "refusal", "retry_once"]

#: Errors that belong to one message, not to the broker or the batch: the event is refused.
MESSAGE_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_RECORD,
})

#: Errors after which this producer stores nothing more: librdkafka's fatal
#: state, and the broker refusing the producer's id or epoch. librdkafka bumps
#: the epoch itself after a message timed out; Tansu then answers every batch
#: INVALID_PRODUCER_EPOCH, for ever (seen after a 1 s SIGSTOP), so the sink
#: starts a new producer with a new id.
PRODUCER_ERRORS = frozenset({
    KafkaError._FATAL,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.PRODUCER_FENCED,
    KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.INVALID_PRODUCER_ID_MAPPING,
})

class DeliveryReports:
    """One batch's failed delivery reports, filled in by librdkafka's callbacks.

    The producer reports only failures (``delivery.report.only.error``: a
    batch is delivered once the producer is empty, see :mod:`.kafka_rounds`).
    One callback per batch, not a closure per event: a failed report is
    matched to its event by key (the uuid), which costs only on failure.
    Whichever thread calls ``poll`` serves the reports, so they are only
    appended (atomic in CPython).
    """

    __slots__ = ("errors",)

    def __init__(self) -> None:
        #: (key, error) of each failed message
        self.errors: List[Tuple[bytes, KafkaError]] = []

    def on_delivery(self, error: Optional[KafkaError], message: Any) -> None:
        if error is not None:
            self.errors.append((message.key() or b"", error))

    def refuse(self, key: bytes, error: KafkaError) -> None:
        """A message librdkafka refused at ``produce``: it gets no report."""
        self.errors.append((key, error))


class ProducerBroken(SinkUnavailable):
    """The producer cannot go on (fatal, fenced, unknown to the broker): replace it."""


_T = TypeVar("_T")


def retry_once(attempt: Callable[[], _T], retried: Type[BaseException]) -> _T:
    """``attempt()``; if it raised ``retried``, once more, whose error then propagates."""
    try:
        return attempt()
    except retried:
        pass
    return attempt()


def breaks_producer(error: KafkaError) -> bool:
    """Whether the producer that got ``error`` must be replaced to store anything again."""
    return error.fatal() or error.code() in PRODUCER_ERRORS


def refusal(error: KafkaError, topic: str) -> str:
    """The 422 reason for an event refused for an error of its own."""
    return f"kafka refused the event for topic {topic}: {error.str()} ({error.name()})"


def outcomes(topic: str, events: Sequence[StoredEvent], reports: DeliveryReports
             ) -> List[Outcome]:
    """One entry per event of a settled batch, from its failed reports.

    :raises ProducerBroken: a failure means the producer must be replaced.
    :raises SinkUnavailable: a failure was not the message's own.
    """
    answers: List[Outcome] = [STORED] * len(events)
    if not reports.errors:
        return answers
    for key, error in reports.errors:
        if error.code() in MESSAGE_ERRORS:
            continue
        problem = (f"kafka: {len(reports.errors)} of {len(events)} messages to {topic} not "
                   f"stored, e.g. event {key.decode(errors='replace')}: {error.str()}")
        if any(breaks_producer(e) for _, e in reports.errors):
            raise ProducerBroken(problem)
        raise SinkUnavailable(problem)
    refused = {key: refusal(error, topic) for key, error in reports.errors}
    for index, event in enumerate(events):
        reason = refused.get(event.uuid.encode())
        if reason is not None:
            answers[index] = Outcome.refused(reason)
    return answers
