"""The Kafka sink: the collector's engine for scale, one topic per stream, keyed by uuid.

A stateless tier of collectors (each gunicorn worker its own producer) writes
every accepted event to Kafka with confluent-kafka (librdkafka)::

    sink = kafka
    kafka.bootstrap_servers = kafka-1:9092,kafka-2:9092
    kafka.topic.v2 = events.v2
    kafka.message_timeout_ms = 2000
    kafka.producer.compression.type = lz4

How a batch is stored
---------------------
- The producer is idempotent (``enable.idempotence=true``, hence
  ``acks=all``): a message the producer retries after a lost answer is
  written once, in order, per partition.
- Each event is one message: key = the event's uuid (so one event's retries
  land in one partition and consumers de-duplicate by key), value = its JSON
  exactly as the publisher sent it, topic = ``kafka.topic.<stream>``.
- :meth:`KafkaSink.store` returns only when every message of the batch is
  acknowledged, so the collector's 2xx means "in Kafka, on every in-sync
  replica". librdkafka reports only failed messages to Python; a batch is
  acknowledged once the producer holds no message, so batches that arrive
  while one is in flight go out together in the next round
  (:mod:`~baseplate_events.collector.sinks.kafka_rounds`). It waits at most
  ``kafka.message_timeout_ms`` plus half a second: after
  ``message.timeout.ms`` librdkafka itself fails what is still unsent. Any
  message not acknowledged (broker unreachable, paused, leader gone, topic
  missing) makes the whole batch :class:`SinkUnavailable`: a 503
  with ``Retry-After``, the publisher keeps the batch and sends it again (the
  messages that did land are then in Kafka twice, with the same key: delivery
  is at least once, as everywhere in this pipeline).
- An error that is the message's own (too large for ``message.max.bytes`` or
  the broker's limit, a record the broker calls invalid) is that event's
  refusal reason, a 422 naming it, never a 503: a 503 would have the
  publisher retry it for ever. Keep the producer's ``message.max.bytes``
  (default 1000000) at or below the topic's ``max.message.bytes``, so that
  librdkafka refuses an oversized event on its own, before it shares a
  request with other events.
- After a fatal producer error (librdkafka's ``error_cb`` with ``fatal()``:
  the idempotent producer's state cannot be recovered), or when the broker
  fences the producer or no longer knows its id, the sink starts a new
  producer and tries the batch once more on it; only if that fails too is
  the batch a 503.

Settings (``kafka.`` keys of the collector's settings)
------------------------------------------------------
``kafka.bootstrap_servers``
    Required: ``host:port[,host:port...]``.
``kafka.topic.v1``, ``kafka.topic.v2``, ``kafka.topic.v2j``
    The topic of each stream (default ``events.v1``, ``events.v2``, ``events.v2j``).
``kafka.message_timeout_ms``
    How long a batch may wait for the broker before the collector answers
    503 (default 2000; the collector waits this plus 0.5 s). Keep that under
    the publisher's ``collector.timeout`` (default 3 s), so that the
    publisher hears the 503 rather than timing out.
``kafka.producer.<option>``
    Any other librdkafka producer option, passed as is
    (``kafka.producer.compression.type = lz4``,
    ``kafka.producer.security.protocol = SASL_SSL``, ...).
    ``enable.idempotence`` and ``acks`` cannot be weakened, nor
    ``delivery.report.only.error`` be turned off. The sink sets
    ``linger.ms = 1`` unless given (it hands a whole batch over at once).
    librdkafka hashes keys with CRC32 by default; set
    ``kafka.producer.partitioner = murmur2_random`` to place each uuid in the
    partition a Java producer would.

Running it
----------
- Create the topics first where the brokers do not auto-create them; a
  missing topic is a 503 with librdkafka's reason until it exists.
- Under gunicorn each worker has its own producer: librdkafka's threads do
  not survive a fork. Without ``--preload`` the worker makes the app, and
  the producer, itself; with ``--preload`` the sink sees at its first batch
  that it is in a new process and makes a new producer there.
- ``GET /readyz`` is 503 while no broker connection is known to be up
  (librdkafka's statistics, every 2 s; so also from the start until the
  first), after a fatal error, and for 5 s after a batch could not be
  stored; then the next batch tries again.
- librdkafka's own log lines go to the ``baseplate_events.collector.sinks.kafka``
  logger.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import List, Mapping, Optional, Sequence

from ...errors import ConfigError
from .kafka_settings import (DEFAULT_TOPICS, MISSING_CLIENT, READY_HOLDOFF,
                             REPORT_GRACE, STATS_INTERVAL_MS, KafkaSettings)

try:
    from confluent_kafka import KafkaError, KafkaException, Producer
except ImportError as exc:  # the kafka extra is not installed
    raise ConfigError("sink", MISSING_CLIENT) from exc

from . import STREAMS, Outcome, Sink, SinkUnavailable, StoredEvent
from .kafka_fork import LIVE
from .kafka_reports import ProducerBroken, outcomes, retry_once
from .kafka_rounds import Pending, Rounds, run_round

__all__ = ["DEFAULT_TOPICS", "MISSING_CLIENT", "KafkaSettings", "KafkaSink", "create",
           "retry_once"]


logger = logging.getLogger(__name__)


class KafkaSink(Sink):
    """Stores each batch in Kafka and returns once the broker acknowledged every event.

    Thread-safe: waitress and gunicorn's threaded workers call :meth:`store`
    from several threads at once, over one producer.
    """

    #: Only each event's uuid and bytes are written: no document is built.
    name = "kafka"
    reads_documents = False

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._fatal: Optional[KafkaError] = None
        #: from librdkafka's statistics: whether a broker connection is up (None: not known yet)
        self._brokers_up: Optional[bool] = None
        #: time.monotonic() of the last batch that could not be stored
        self._failed_at = float("-inf")
        self._closed = False
        self._rounds = Rounds(self._new_producer())
        #: the process that made the producer: a forked child needs its own
        self._pid = os.getpid()
        LIVE.add(self)

    def describe(self) -> str:
        """For the start line: the brokers and the topic of each stream."""
        topics = ", ".join(f"{stream} -> {self.settings.topics[stream]}" for stream in STREAMS)
        return f"kafka brokers {self.settings.bootstrap_servers} (topics {topics})"

    @property
    def producer(self) -> Producer:
        """The current producer (a new one after a fatal error)."""
        return self._rounds.producer

    def _new_producer(self) -> Producer:
        config = self.settings.producer_config()
        config["error_cb"] = self._on_error
        config["stats_cb"] = self._on_stats
        # librdkafka's own log lines go to this module's logger (served by poll),
        # not straight to stderr.
        config["logger"] = logger
        config.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
        try:
            return Producer(config)
        except KafkaException as exc:
            error = exc.args[0]
            reason = error.str() if isinstance(error, KafkaError) else str(exc)
            raise ConfigError("kafka.producer.*",
                              f"librdkafka refused the configuration: {reason}") from None

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's client-level errors (served by ``poll``)."""
        if error.fatal():
            logger.error("kafka sink: fatal producer error, the producer will be recreated: %s",
                         error.str())
            self._fatal = error
        else:
            logger.warning("kafka sink: %s (brokers %s)", error.str(),
                           self.settings.bootstrap_servers)

    def _on_stats(self, document: str) -> None:
        """librdkafka's statistics (every few seconds): is any broker connection up?"""
        brokers = json.loads(document).get("brokers", {}).values()
        self._brokers_up = any(b.get("state") == "UP" for b in brokers
                               if b.get("source") in ("configured", "learned"))

    def _replace(self, producer: Producer, reason: str) -> None:
        """Put a new producer in place of ``producer``, unless another thread already did."""
        with self._lock:
            if self._rounds.producer is not producer:
                return
            self._rounds = Rounds(self._recreated(reason))
            self._fatal = None
        logger.warning("kafka sink: producer recreated after: %s", reason)
        # In-flight batches of other threads hold the old producer and see
        # their own reports fail; its unsent messages go now.
        producer.purge()

    def _recreated(self, reason: str) -> Producer:
        """A new producer in place of a broken one; SinkUnavailable while none can be made.

        The configuration made a producer before, so a failure now is the
        process's state (threads, memory), not the settings.
        """
        try:
            return self._new_producer()
        except ConfigError as exc:
            raise SinkUnavailable(f"kafka: cannot recreate the producer (after {reason}): "
                                  f"{exc}") from None

    def _after_fork(self) -> None:
        """A new producer in a forked child (gunicorn ``--preload`` made the sink in its master)."""
        with self._lock:
            if self._pid == os.getpid():
                return
            # the inherited producer is pinned at the fork
            self._rounds = Rounds(self._recreated("a fork"))
            self._fatal = None
            self._brokers_up = None
            self._pid = os.getpid()
        logger.info("kafka sink: a new producer for process %d (the sink was made before a "
                    "fork)", self._pid)

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Outcome]:
        """Produce every event to the stream's topic and wait until Kafka acknowledged each.

        A producer that librdkafka declared fatal, or that the broker fenced
        or no longer knows, is replaced and the batch tried once more on the
        new one.

        :raises SinkUnavailable: a message was not acknowledged in time, the
            broker is unreachable, or the new producer failed too.
        """
        topic = self.settings.topics[stream]
        if self._closed:
            raise SinkUnavailable("kafka: the sink is closed")
        if self._pid != os.getpid():
            self._after_fork()
        try:
            outcomes = retry_once(lambda: self._attempt(topic, events), ProducerBroken)
        except SinkUnavailable:
            self._failed_at = time.monotonic()
            raise
        if any(outcome.kind == "stored" for outcome in outcomes):
            self._brokers_up = True  # a broker acknowledged an event
        return outcomes

    def _attempt(self, topic: str, events: Sequence[StoredEvent]) -> List[Outcome]:
        """The batch on the current producer; one found broken is replaced, then raised.

        :raises ProducerBroken: the producer was fatal, fenced or unknown (now replaced).
        """
        rounds = self._rounds
        producer = rounds.producer
        if self._fatal is not None:
            problem = f"fatal error: {self._fatal.str()}"
            self._replace(producer, problem)
            raise ProducerBroken(f"kafka: the producer had a {problem}")
        try:
            return self._store_once(rounds, topic, events)
        except ProducerBroken as broken:
            self._replace(producer, str(broken))
            raise

    def _store_once(self, rounds: Rounds, topic: str,
                    events: Sequence[StoredEvent]) -> List[Outcome]:
        """The batch in a round of ``rounds`` (:mod:`.kafka_rounds`): its outcomes once settled."""
        bound = self.settings.message_timeout_ms / 1000 + REPORT_GRACE
        pending = Pending(topic, events, time.monotonic() + bound)
        brokers = self.settings.bootstrap_servers

        def expired(late: Pending, taken: bool) -> SinkUnavailable:
            waited = "had no delivery report" if taken else "waited for the batches before them"
            return SinkUnavailable(f"kafka: {len(late.events)} messages to {late.topic} {waited} "
                                   f"after {bound:g} s (brokers {brokers})")

        rounds.send(pending, lambda batches: run_round(
            rounds.producer, batches, brokers, bound, lambda: self._closed), expired)
        if pending.failure is not None:
            raise pending.failure
        return outcomes(topic, events, pending.reports)

    def ready(self) -> bool:
        """False until a broker connection is known to be up (librdkafka's statistics,
        a stored batch or a probe), without one, after a fatal error, and for a few
        seconds after a batch could not be stored (then the next batch tries again)."""
        try:
            if self._pid != os.getpid():
                self._after_fork()
            self._rounds.producer.poll(0)  # serve pending error and statistics callbacks; cheap
        except KafkaException as exc:  # confluent-kafka raises a fatal error from poll
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.fatal():
                self._fatal = error  # the next batch replaces the producer
            return False
        except Exception:  # ready() never raises
            return False
        recent_failure = time.monotonic() - self._failed_at < READY_HOLDOFF
        # Not known yet (no statistics, no batch, no probe since the producer was made)
        # is not ready: a load balancer waits the first statistics interval.
        return self._fatal is None and self._brokers_up is True and not recent_failure

    def probe(self) -> None:
        """Ask the brokers for metadata, within the batch's bound; a success ends the hold-off.

        :raises SinkUnavailable: no broker answered in time.
        """
        bound = self.settings.message_timeout_ms / 1000 + REPORT_GRACE
        try:
            if self._pid != os.getpid():
                self._after_fork()
            metadata = self._rounds.producer.list_topics(timeout=bound)
        except KafkaException as exc:
            error = exc.args[0]
            reason = error.str() if isinstance(error, KafkaError) else str(exc)
            raise SinkUnavailable(f"kafka: no metadata from brokers "
                                  f"{self.settings.bootstrap_servers}: {reason}") from None
        if not metadata.brokers:
            raise SinkUnavailable(f"kafka: brokers {self.settings.bootstrap_servers} "
                                  "listed no broker")
        if self._fatal is not None:
            raise SinkUnavailable(f"kafka: the producer failed: {self._fatal.str()}")
        self._brokers_up = True
        self._failed_at = float("-inf")

    def close(self) -> None:
        """Wait up to the message timeout for what is in flight, then stop the producer.

        Idempotent: the app closes its sink at exit, a test may close it first.
        """
        if self._closed or self._pid != os.getpid():
            return  # closed, or a forked child's copy of the parent's producer
        self._closed = True
        producer = self._rounds.producer
        try:
            left = producer.flush(self.settings.message_timeout_ms / 1000)
        except KafkaException as exc:  # a producer in librdkafka's fatal state flushes nothing
            logger.warning("kafka sink: closed a producer that cannot flush: %s", exc)
            left = len(producer)
        if left:
            logger.warning("kafka sink: closed with %d messages not acknowledged; their "
                           "batches were answered 503 and the publishers resend them", left)
        # Stop its threads now, not whenever the garbage collector breaks the
        # producer ↔ callbacks cycle (they would go on reconnecting meanwhile).
        closer = getattr(producer, "close", None)  # where confluent-kafka has it
        if closer is not None:
            closer()


def create(options: Mapping[str, str]) -> KafkaSink:
    """The sink for ``sink = kafka`` (see :func:`~baseplate_events.collector.sinks.create_sink`).

    :raises ConfigError: an option is missing or invalid.
    """
    return KafkaSink(KafkaSettings.from_options(options))


