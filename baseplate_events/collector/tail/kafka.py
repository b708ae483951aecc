"""Read the Kafka sink's topics back: every partition by ``assign``, no offsets committed.

The tail reads as a consumer outside any group: it ``assign``-s itself every
partition of the stream topics (``kafka.topic.*``), so that it neither waits
for a group's rebalance (a consumer group took 3-23 s to its first message on
Tansu, ``assign`` 0.02 s) nor moves a group's offsets.

When is it caught up? Each partition's high watermark is taken at the start;
the reader is caught up once every partition has been read up to it (and the
broker said "end of partition"), and then ``idle`` seconds (``--idle``,
default 1) passed without a message. It never stops before the watermark.
The idle wait also catches what a watermark misses: Tansu answers ListOffsets
with less than the partition holds (13 for a partition of 15 messages), and
a reader that stopped there found 1920 of 2000 events.

With ``--follow`` it reads on, and every few seconds looks for topics and
partitions made since the start (a stream's first event creates its topic),
which it reads from their beginning.

``--last N`` counts per partition: each partition is read from N before its
watermark (or its start), and only the last N of each are printed, sorted by
the messages' timestamps, which are the collector's receipt times.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

# first: without confluent-kafka, this raises the ConfigError that names the fix
from ..sinks.kafka import KafkaSettings
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition
from . import CAUGHT_UP, Events, KafkaPosition, Reader, TailedEvent, TailRequest, UnreadableSink

__all__ = ["PASSED_THROUGH", "KafkaReader", "consumer_config", "read_messages"]

logger = logging.getLogger(__name__)
#: librdkafka's own log lines (a broker connection closed, ...)
librdkafka_logger = logging.getLogger(__name__ + ".librdkafka")

#: The collector's ``kafka.producer.*`` options the tail's consumer takes too:
#: how to reach and authenticate to the brokers.
PASSED_THROUGH = ("security.", "sasl.", "ssl.")

#: How long a read may go without a message before the reader says, on
#: stderr, which partitions it still waits for.
_WAIT_NOTICE = 10.0

#: With ``--follow``, how often the reader looks for topics and partitions made
#: since the start (a stream's first event creates its topic).
_RESCAN = 5.0

_Key = Tuple[str, int]


def consumer_config(settings: KafkaSettings) -> Dict[str, Any]:
    """The consumer's librdkafka options: the brokers, the passed-through
    ``kafka.producer.security.*``, ``sasl.*`` and ``ssl.*``, and no offset commits."""
    config: Dict[str, Any] = {key: value for key, value in settings.producer.items()
                              if key.startswith(PASSED_THROUGH)}
    config["bootstrap.servers"] = settings.bootstrap_servers
    return config


def read_messages(config: Mapping[str, Any], topics: Iterable[str], last: Optional[int] = None,
                  follow: bool = False, idle: float = 1.0,
                  stop: Optional[threading.Event] = None) -> Iterator[Optional[Message]]:
    """Every message of ``topics`` (or each partition's last ``last``), then None
    once caught up (see the module docstring); with ``follow``, then each new
    message, and None after each burst, until ``stop`` is set.

    :param config: librdkafka options; ``bootstrap.servers`` at least.
    :raises UnreadableSink: no broker answered.
    """
    stop = stop or threading.Event()
    consumer = Consumer({
        **config,
        # librdkafka's Python binding wants a group id even for assign; nothing
        # joins the group and no offset is committed under it.
        "group.id": "baseplate-events-tail",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "logger": librdkafka_logger,
    })
    try:
        partitions = _partitions(consumer, topics, config)
        marks: Dict[_Key, int] = {}
        for tp in partitions:
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            except KafkaException as exc:
                raise UnreadableSink(f"kafka: no watermarks for {tp.topic} [{tp.partition}]: "
                                     f"{_reason(exc)}") from None
            marks[(tp.topic, tp.partition)] = high
            tp.offset = OFFSET_BEGINNING if last is None else max(low, high - last)
        consumer.assign(partitions)
        yield from _consume(consumer, marks, last, follow, idle, stop,
                            lambda: _partitions(consumer, topics, config, quiet=True))
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topics: Iterable[str], config: Mapping[str, Any],
                quiet: bool = False) -> List[TopicPartition]:
    try:
        metadata = consumer.list_topics(timeout=10)
    except KafkaException as exc:
        raise UnreadableSink(f"kafka: cannot reach {config.get('bootstrap.servers')}: "
                             f"{_reason(exc)}") from None
    partitions = []
    for topic in topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            if not quiet:
                logger.info("kafka: no topic %s yet: nothing was stored on it", topic)
            continue
        partitions += [TopicPartition(topic, number) for number in sorted(found.partitions)]
    return partitions


def _consume(consumer: Consumer, marks: Dict[_Key, int], last: Optional[int], follow: bool,
             idle: float, stop: threading.Event,
             rescan: Callable[[], List[TopicPartition]]) -> Iterator[Optional[Message]]:
    reached = {key: -1 for key in marks}
    at_end: set = set()
    # --last N: each partition's last N wait here until the reader is caught up
    held: Optional[Dict[_Key, Deque[Message]]] = (
        None if last is None else {key: deque(maxlen=last) for key in marks})
    caught_up = False
    caught_up_at: Optional[float] = None
    last_message = time.monotonic()
    noticed = rescanned = last_message
    unflushed = False
    while not stop.is_set():
        messages = consumer.consume(1000, 0.1)
        now = time.monotonic()
        for message in messages:
            topic, partition, offset = _where(message)
            key = (topic, partition)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(key)
                    reached[key] = max(reached.get(key, -1), offset)
                else:
                    logger.warning("kafka: %s", error.str())
                continue
            reached[key] = max(reached.get(key, -1), offset + 1)
            last_message = now
            if held is not None:
                held[key].append(message)
            else:
                unflushed = True
                yield message
        if not caught_up:
            if caught_up_at is None and all(
                    reached[key] >= mark and key in at_end for key, mark in marks.items()):
                caught_up_at = now
            if caught_up_at is not None and now - max(caught_up_at, last_message) >= idle:
                caught_up = True
                if held is not None:
                    yield from sorted((m for kept in held.values() for m in kept),
                                      key=lambda m: m.timestamp()[1])
                    held = None
                unflushed = False
                yield CAUGHT_UP
                if not follow:
                    return
            elif now - max(last_message, noticed) >= _WAIT_NOTICE:
                noticed = now
                behind = [f"{t} [{p}] at {max(reached[(t, p)], 0)} of {marks[(t, p)]}"
                          for t, p in marks if reached[(t, p)] < marks[(t, p)]
                          or (t, p) not in at_end]
                logger.warning("kafka: still reading to the high watermarks taken at the "
                               "start: %s", ", ".join(behind) or "none")
        else:
            if unflushed and not messages:
                unflushed = False
                yield CAUGHT_UP
            if now - rescanned >= _RESCAN:
                rescanned = now
                _assign_new(consumer, marks, reached, at_end, rescan)


def _assign_new(consumer: Consumer, marks: Dict[_Key, int], reached: Dict[_Key, int],
                at_end: set, rescan: Callable[[], List[TopicPartition]]) -> None:
    """``--follow``: read a topic (or partition) created since the start from its beginning."""
    try:
        found = rescan()
    except UnreadableSink:
        return  # the broker is away for now; the next look tries again
    new = [tp for tp in found if (tp.topic, tp.partition) not in marks]
    for tp in new:
        tp.offset = OFFSET_BEGINNING
        key = (tp.topic or "", tp.partition or 0)
        marks[key], reached[key] = 0, -1
        at_end.add(key)
    if new:
        logger.info("kafka: reading %s from its beginning (new since the start)",
                    ", ".join(sorted({tp.topic or "" for tp in new})))
        consumer.incremental_assign(new)


def _where(message: Message) -> Tuple[str, int, int]:
    """A message's topic, partition and offset (librdkafka leaves none of them unset on a
    message or a partition's end)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    return topic or "", -1 if partition is None else partition, -1 if offset is None else offset


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


class KafkaReader(Reader):
    """The Kafka sink's topics, one per stream, read back."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> "KafkaReader":
        """From the collector's ``kafka.*`` options (prefix stripped).

        :raises ConfigError: an option is missing or invalid.
        """
        return cls(KafkaSettings.from_options(options))

    def events(self, request: TailRequest,
               stop: threading.Event) -> Events:
        streams = {topic: stream for stream, topic in self.settings.topics.items()}
        for message in read_messages(consumer_config(self.settings), streams,
                                     request.last, request.follow, request.idle, stop):
            if message is None:
                yield CAUGHT_UP
                continue
            key = message.key()
            topic, partition, offset = _where(message)
            yield TailedEvent(
                "" if key is None else key.decode("utf-8", "replace"), streams[topic],
                message.timestamp()[1], message.value() or b"",
                KafkaPosition(topic, partition, offset))
