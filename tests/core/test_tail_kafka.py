"""``baseplate-events-tail`` on Kafka: assign, no offsets committed, watermarks then idle.

The events are stored by the collector's own Kafka sink on the session's
Tansu broker (topics of the test's own), and read back by the tail's reader.
"""
from __future__ import annotations

import io
import json
import threading
from collections import Counter
from typing import Dict, List

import pytest
from confluent_kafka import Consumer, TopicPartition

from baseplate_events.collector.sinks import STORED
from baseplate_events.collector.sinks.kafka import KafkaSettings, KafkaSink
from baseplate_events.collector.tail import TailRequest
from baseplate_events.collector.tail.__main__ import main
from baseplate_events.collector.tail.kafka import KafkaReader, consumer_config
from demo_app.tansu import TansuBroker
from tests.support.kafka import stored_event


def store(broker: TansuBroker, topics: Dict[str, str], count: int, batch: int = 16) -> List[str]:
    """``count`` v2j events stored by the real sink, ``batch`` at a time; their uuids."""
    sink = KafkaSink(KafkaSettings(broker.bootstrap, dict(topics)))
    uuids: List[str] = []
    try:
        for start in range(0, count, batch):
            events = [stored_event("2j") for _ in range(min(batch, count - start))]
            assert [STORED] * len(events) == sink.store("v2j", events)
            uuids += [e.uuid for e in events]
    finally:
        sink.close()
    return uuids


def flags(broker: TansuBroker, topics: Dict[str, str]) -> List[str]:
    return ["--sink", "kafka", "--option", f"kafka.bootstrap_servers={broker.bootstrap}",
            *[f"--option=kafka.topic.{stream}={topic}" for stream, topic in topics.items()]]


def tail(*argv: str) -> List[dict]:
    out = io.BytesIO()
    assert 0 == main(list(argv), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_consumer_takes_the_collectors_security_options_only() -> None:
    """kafka.producer.security.*, sasl.* and ssl.* reach the consumer; producer tuning does not."""
    settings = KafkaSettings.from_options({
        "bootstrap_servers": "k1:9093", "producer.security.protocol": "SASL_SSL",
        "producer.sasl.mechanism": "SCRAM-SHA-512", "producer.sasl.username": "tail",
        "producer.ssl.ca.location": "/etc/ssl/ca.pem", "producer.compression.type": "lz4",
        "producer.linger.ms": "5"})
    assert {"bootstrap.servers": "k1:9093", "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "tail",
            "ssl.ca.location": "/etc/ssl/ca.pem"} == consumer_config(settings)


@pytest.mark.system
def test_from_the_beginning_reads_every_event_past_the_watermark(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str]
) -> None:
    """2000 events in batches of 16: all 2000 read back (a reader stopping at Tansu's
    watermark found 1920)."""
    put = store(kafka_broker, kafka_topics, 2000)
    printed = tail(*flags(kafka_broker, kafka_topics), "--from-beginning")
    assert sorted(put) == sorted(p["uuid"] for p in printed)


@pytest.mark.system
def test_last_n_counts_per_partition(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str]
) -> None:
    """--last 3: the 3 highest offsets of each partition, no more."""
    store(kafka_broker, kafka_topics, 60, batch=5)
    everything = tail(*flags(kafka_broker, kafka_topics), "--from-beginning")
    printed = tail(*flags(kafka_broker, kafka_topics), "--last", "3")
    by_partition: Dict[int, List[int]] = {}
    for p in everything:
        by_partition.setdefault(p["partition"], []).append(p["offset"])
    expected = sorted((partition, offset) for partition, offsets in by_partition.items()
                      for offset in sorted(offsets)[-3:])
    assert expected == sorted((p["partition"], p["offset"]) for p in printed)
    assert {3} == set(Counter(p["partition"] for p in printed).values())


@pytest.mark.system
def test_the_tail_commits_no_offsets(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str]
) -> None:
    """After a read, the tail's group id holds no committed offset on any partition."""
    store(kafka_broker, kafka_topics, 40)
    list(KafkaReader(KafkaSettings(kafka_broker.bootstrap, dict(kafka_topics))).events(
        TailRequest(last=None), threading.Event()))
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap,
                         "group.id": "baseplate-events-tail", "enable.auto.commit": False})
    try:
        topic = kafka_topics["v2j"]
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    assert [-1001] * len(partitions) == [tp.offset for tp in committed]  # OFFSET_INVALID


@pytest.mark.system
def test_follow_reads_a_topic_made_after_the_start(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str]
) -> None:
    """--follow: a stream's first event, on a topic that did not exist at the start, is read."""
    store(kafka_broker, kafka_topics, 3)
    stop = threading.Event()
    events = KafkaReader(KafkaSettings(kafka_broker.bootstrap, dict(kafka_topics))).events(
        TailRequest(last=None, follow=True, idle=0.2), stop)
    first = []
    for event in events:
        if event is None:
            break
        first.append(event.stream)
    sink = KafkaSink(KafkaSettings(kafka_broker.bootstrap, dict(kafka_topics)))
    try:
        late = stored_event("1")
        assert [STORED] == sink.store("v1", [late])
    finally:
        sink.close()
    later = next(event for event in events if event is not None)
    stop.set()
    events.close()
    assert (["v2j"] * 3, "v1", late.uuid) == (first, later.stream, later.uuid)


@pytest.mark.system
def test_no_broker_is_one_line_naming_the_brokers(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens at the bootstrap address: exit 1, the brokers and librdkafka's reason
    (after its 10 s metadata timeout)."""
    status = main(["--sink", "kafka", "--option", "kafka.bootstrap_servers=127.0.0.1:1"],
                  io.BytesIO())
    assert 1 == status
    assert ("baseplate-events-tail: kafka: cannot reach 127.0.0.1:1: Failed to get metadata: "
            "Local: Broker transport failure") == capsys.readouterr().err.splitlines()[-1]


@pytest.mark.system
def test_a_message_that_is_no_event_is_printed_with_the_error(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str]
) -> None:
    """Another producer's junk on a stream's topic: printed with its error, not skipped."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    producer.produce(kafka_topics["v2"], key=b"junk", value=b"not json")
    assert 0 == producer.flush(10)
    with pytest.raises(ValueError) as reason:
        json.loads(b"not json")
    [printed] = tail(*flags(kafka_broker, kafka_topics))
    assert ("junk", f"cannot read the event: {reason.value}", "not json") == (
        printed["uuid"], printed["error"], printed["event"])
