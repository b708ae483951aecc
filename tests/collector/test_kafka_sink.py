"""The collector's Kafka sink against a real Kafka-protocol broker (Tansu, in memory).

Each test writes to topics of its own and reads them back by ``assign``.
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from baseplate_events.collector.sinks import (STORED, Outcome, SinkUnavailable, StoredEvent,
                                             create_sink)
from baseplate_events.collector.sinks.kafka import KafkaSettings, KafkaSink, create
from baseplate_events.collector.sinks.kafka_rounds import Pending, Rounds
from baseplate_events.errors import ConfigError
from demo_app.tansu import BrokerUnavailable, TansuBroker, count_keys, free_port, read_topics
from tests.support.kafka import raise_fatal_error, stored_event


def make_sink(bootstrap: str, topics: Dict[str, str], **extra: str) -> KafkaSink:
    options = {"bootstrap_servers": bootstrap,
               **{f"topic.{stream}": topic for stream, topic in topics.items()}, **extra}
    return create(options)


@pytest.fixture
def sinks() -> "List[KafkaSink]":
    """Sinks a test made; closed at teardown (a paused broker is resumed first by the test)."""
    made: List[KafkaSink] = []
    yield made
    for sink in made:
        sink.close()


@pytest.mark.system
def test_a_batch_is_stored_keyed_by_uuid_with_the_raw_json(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """Every event lands once in its stream's topic: key = uuid, value = the bytes received."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    events = [stored_event("2", n=n) for n in range(50)]
    reasons = sink.store("v2", events)
    records = read_topics(kafka_broker.bootstrap, kafka_topics.values())
    assert [STORED] * 50 == reasons
    assert {e.uuid: 1 for e in events} == dict(count_keys(records))
    assert {kafka_topics["v2"]} == {r.topic for r in records}
    assert {e.uuid.encode(): e.raw for e in events} == {r.key: r.value for r in records}


@pytest.mark.system
def test_threads_storing_at_once_each_get_their_own_reports(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """Four threads over one producer (waitress's way): every batch stored, every event once."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    batches = [[stored_event("2j", n=n) for n in range(100)] for _ in range(20)]
    answers: List[List[Optional[str]]] = []

    def worker(mine: List[List[StoredEvent]]) -> None:
        for batch in mine:
            answers.append(sink.store("v2j", batch))

    threads = [threading.Thread(target=worker, args=(batches[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    counts = count_keys(read_topics(kafka_broker.bootstrap, kafka_topics.values()))
    assert [[STORED] * 100] * 20 == answers
    assert {e.uuid: 1 for batch in batches for e in batch} == dict(counts)


@pytest.mark.system
def test_batches_stored_at_once_share_rounds_and_keep_their_own_refusals(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """Batches waiting for a round go out together; each still hears only of its own events."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics,
                     **{"producer.message.max.bytes": "1000"})
    sinks.append(sink)
    warm_up = stored_event("2j")
    assert [STORED] == sink.store("v2j", [warm_up])  # connected, producer id taken
    batches = [[stored_event("2j", size=3000 if n == b % 10 else 200) for n in range(10)]
               for b in range(20)]
    answers: Dict[int, List[Outcome]] = {}
    start = threading.Barrier(4)

    def worker(mine: List[int]) -> None:
        start.wait()
        for b in mine:
            answers[b] = sink.store("v2j", batches[b])

    threads = [threading.Thread(target=worker, args=(list(range(i, 20, 4)),)) for i in range(4)]
    rounds_before = sink._rounds.count
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    records = read_topics(kafka_broker.bootstrap, kafka_topics.values())
    expected_reason = (f"kafka refused the event for topic {kafka_topics['v2j']}: Unable to "
                       "produce message: Broker: Message size too large (MSG_SIZE_TOO_LARGE)")
    assert {b: [Outcome.refused(expected_reason) if n == b % 10 else STORED
                for n in range(10)] for b in range(20)} == answers
    counts = dict(count_keys(records))
    assert 1 == counts.pop(warm_up.uuid)
    assert {e.uuid: 1 for b, batch in enumerate(batches) for n, e in enumerate(batch)
            if n != b % 10} == counts
    assert sink._rounds.count - rounds_before < 20


@pytest.mark.system
def test_a_batch_behind_a_stuck_round_is_unavailable_within_its_own_bound(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """Broker paused: the batch waiting for the stuck round gets its 503 within 2.5 s too."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    assert [STORED] == sink.store("v2", [stored_event("2")])
    waited: Dict[str, float] = {}
    errors: Dict[str, str] = {}

    def store(name: str) -> None:
        started = time.monotonic()
        try:
            sink.store("v2", [stored_event("2") for _ in range(3)])
        except SinkUnavailable as exc:
            errors[name] = str(exc)
        waited[name] = time.monotonic() - started

    kafka_broker.pause()
    try:
        first = threading.Thread(target=store, args=("first",))
        first.start()
        time.sleep(0.3)  # the first batch's round is in flight
        second = threading.Thread(target=store, args=("second",))
        second.start()
        first.join(10)
        second.join(10)
    finally:
        kafka_broker.resume()
    assert ["first", "second"] == sorted(errors)
    assert max(waited.values()) < 2.5 + 0.5, waited
    assert [STORED] == sink.store("v2", [stored_event("2")])


@pytest.mark.system
def test_a_stream_librdkafka_refuses_costs_its_own_batches_only(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """A bad topic for v1 in the same rounds as v2 batches: the v1 batches 503, v2 stored."""
    sink = make_sink(kafka_broker.bootstrap, {**kafka_topics, "v1": "t" * 1000})
    sinks.append(sink)
    assert [STORED] == sink.store("v2", [stored_event("2")])
    answers: Dict[Tuple[str, int], str] = {}
    start = threading.Barrier(6)

    def worker(stream: str, index: int) -> None:
        start.wait()
        for n in range(5):
            try:
                answers[stream, index * 5 + n] = repr(
                    sink.store(stream, [stored_event(stream[1:]) for _ in range(20)]))
            except SinkUnavailable as exc:
                answers[stream, index * 5 + n] = str(exc).split(":")[1].strip()

    threads = [threading.Thread(target=worker, args=(stream, i))
               for stream in ("v1", "v2") for i in range(3)]
    rounds_before = sink._rounds.count
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {**{("v1", n): "cannot produce to " + "t" * 1000 for n in range(15)},
            **{("v2", n): repr([STORED] * 20) for n in range(15)}} == answers
    assert sink._rounds.count - rounds_before < 30


@pytest.mark.system
def test_a_fresh_batch_is_not_failed_with_an_older_one_that_shares_its_round(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """Broker paused: the old batch is a 503 at its own deadline, the fresh one lands after."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics, message_timeout_ms="3000")
    sinks.append(sink)
    assert [STORED] == sink.store("v2", [stored_event("2")])
    answers: Dict[str, str] = {}

    def store(name: str) -> None:
        try:
            answers[name] = repr(sink.store("v2", [stored_event("2")]))
        except SinkUnavailable as exc:
            answers[name] = str(exc).split(" to ")[0]

    threads = {name: threading.Thread(target=store, args=(name,)) for name in "XAF"}
    started = time.monotonic()
    kafka_broker.pause()
    try:
        for name, at in (("X", 0.0), ("A", 0.2), ("F", 2.6)):  # X's round in flight till 3 s
            time.sleep(max(0.0, started + at - time.monotonic()))
            threads[name].start()
        time.sleep(max(0.0, started + 4.0 - time.monotonic()))  # A's bound ends at 3.7 s
    finally:
        kafka_broker.resume()
    for thread in threads.values():
        thread.join(10)
    assert {"X": "kafka: 1 of 1 messages", "A": "kafka: 1 messages",
            "F": repr([STORED])} == answers


@pytest.mark.system
def test_a_round_on_a_sink_closing_under_it_is_unavailable(
    kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """close() while a round waits: a closing producer counts no message, so never a 2xx."""
    sink = make_sink(f"127.0.0.1:{free_port()}", kafka_topics, message_timeout_ms="1000")
    sinks.append(sink)
    closer = threading.Timer(0.3, sink.close)
    closer.start()
    try:
        with pytest.raises(SinkUnavailable) as caught:
            sink.store("v2", [stored_event("2")])
    finally:
        closer.join(10)
    assert ("kafka: the sink closed while the batch was in flight; the publisher sends it "
            "again") == str(caught.value)


def test_a_round_interrupted_in_its_leading_thread_fails_every_batch_it_took() -> None:
    """A request timeout raised in the leader: the batches it took are 503s, never stored."""

    class Interrupted(BaseException):
        """What a request timeout raised in a worker thread looks like."""

    rounds = Rounds(producer=None)
    first_round = threading.Event()
    deadline = time.monotonic() + 30
    outcomes: Dict[str, str] = {}

    def blocked(batches: List[Pending]) -> None:
        first_round.wait(10)

    def interrupted(batches: List[Pending]) -> None:
        raise Interrupted()

    def send(name: str, run: Callable[[List[Pending]], None]) -> None:
        pending = Pending("t", [stored_event("2")], deadline)
        try:
            rounds.send(pending, run, lambda late, taken: SinkUnavailable("expired"))
        except Interrupted:
            outcomes[name] = "interrupted"
            return
        outcomes[name] = str(pending.failure)

    leader = threading.Thread(target=send, args=("first", blocked))
    leader.start()
    while not rounds._leading:
        time.sleep(0.001)
    others = [threading.Thread(target=send, args=(name, interrupted)) for name in ("a", "b")]
    for thread in others:
        thread.start()
    while len(rounds._waiting) < 2:
        time.sleep(0.001)
    first_round.set()
    for thread in [leader, *others]:
        thread.join(10)
    assert "None" == outcomes.pop("first")
    assert ["interrupted", "kafka: the round sending this batch was interrupted (Interrupted())"
            ] == sorted(outcomes.values())


@pytest.mark.system
def test_a_sink_that_stored_a_batch_is_ready(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """ready() is True with the broker up and the last batch stored."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    sink.store("v2", [stored_event("2")])
    assert True is sink.ready()


def test_a_new_sink_is_not_ready_while_no_broker_is_known_up(
    kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """Nothing listening at bootstrap: ready() is False from the start, before any batch."""
    sink = make_sink(f"127.0.0.1:{free_port()}", kafka_topics)
    sinks.append(sink)
    assert False is sink.ready()


@pytest.mark.system
def test_a_new_sink_is_ready_once_a_broker_connection_is_up(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """A healthy broker: ready() turns True with librdkafka's first statistics, no batch sent."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics,
                     **{"producer.statistics.interval.ms": "100"})
    sinks.append(sink)
    deadline = time.monotonic() + 5
    while not sink.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert True is sink.ready()


@pytest.mark.system
def test_a_forked_child_stores_through_a_producer_of_its_own(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """A sink made before a fork (gunicorn --preload) works in the child: a new producer."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    assert [STORED] == sink.store("v2", [stored_event("2")])
    event = stored_event("2")
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if the batch was stored
        try:
            os._exit(0 if sink.store("v2", [event]) == [STORED] else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    stored = count_keys(read_topics(kafka_broker.bootstrap, kafka_topics.values()))
    assert 0 == os.waitstatus_to_exitcode(status)
    assert 1 == stored[event.uuid]


@pytest.mark.system
def test_each_stream_goes_to_its_own_topic(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """v1, v2 and v2j batches land in kafka.topic.v1, .v2 and .v2j."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    sent = {stream: stored_event(stream[1:]) for stream in ("v1", "v2", "v2j")}
    for stream, event in sent.items():
        sink.store(stream, [event])
    records = read_topics(kafka_broker.bootstrap, kafka_topics.values())
    expected = {kafka_topics[stream]: event.uuid.encode() for stream, event in sent.items()}
    assert expected == {r.topic: r.key for r in records}


@pytest.mark.system
def test_an_event_over_message_max_bytes_is_refused_and_the_rest_stored(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """The oversized event gets a reason (a 422), never a 503; its neighbours are stored."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics,
                     **{"producer.message.max.bytes": "1000"})
    sinks.append(sink)
    events = [stored_event("2j", size=200), stored_event("2j", size=3000),
              stored_event("2j", size=200)]
    reasons = sink.store("v2j", events)
    records = read_topics(kafka_broker.bootstrap, kafka_topics.values())
    expected_reason = (f"kafka refused the event for topic {kafka_topics['v2j']}: Unable to "
                       "produce message: Broker: Message size too large (MSG_SIZE_TOO_LARGE)")
    assert [STORED, Outcome.refused(expected_reason), STORED] == reasons
    assert {events[0].uuid: 1, events[2].uuid: 1} == dict(count_keys(records))


@pytest.mark.system
def test_a_batch_larger_than_the_producer_queue_waits_for_room_and_is_stored_whole(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """librdkafka takes 5 of the batch at once; the other 25 wait for room, one by one."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics,
                     **{"producer.queue.buffering.max.messages": "5"})
    sinks.append(sink)
    events = [stored_event("2", n=n) for n in range(30)]
    assert [STORED] * 30 == sink.store("v2", events)
    records = read_topics(kafka_broker.bootstrap, kafka_topics.values())
    assert {e.uuid: 1 for e in events} == dict(count_keys(records))
    assert {e.uuid.encode(): e.raw for e in events} == {r.key: r.value for r in records}


@pytest.mark.system
def test_a_paused_broker_makes_the_batch_unavailable_and_the_next_one_lands(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """SIGSTOPped broker: SinkUnavailable within the bound; after SIGCONT the batch is stored."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    # connected, producer id acquired (librdkafka's idempotent start takes 0.5 s), topic created
    assert [STORED] == sink.store("v2", [stored_event("2")])
    events = [stored_event("2", n=n) for n in range(5)]
    kafka_broker.pause()
    try:
        started = time.monotonic()
        with pytest.raises(SinkUnavailable) as caught:
            sink.store("v2", events)
        waited = time.monotonic() - started
    finally:
        kafka_broker.resume()
    assert re.fullmatch(
        rf"kafka: [1-5] of 5 messages to {re.escape(kafka_topics['v2'])} (not stored, e\.g\. "
        rf"event [0-9a-f-]{{36}}: Local: Message timed out|had no delivery report after 2\.5 s "
        rf"\(brokers {kafka_broker.bootstrap}\))", str(caught.value)), str(caught.value)
    assert waited < 2.5 + 0.5
    assert not sink.ready()
    assert [STORED] * 5 == sink.store("v2", events)
    stored = count_keys(read_topics(kafka_broker.bootstrap, kafka_topics.values()))
    assert {e.uuid for e in events} <= set(stored)


def test_an_unreachable_broker_is_unavailable_and_not_ready(
    kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """Nothing listening at bootstrap: store raises SinkUnavailable and ready() turns False."""
    sink = make_sink(f"127.0.0.1:{free_port()}", kafka_topics,
                     **{"message_timeout_ms": "300",
                        "producer.statistics.interval.ms": "100"})
    sinks.append(sink)
    with pytest.raises(SinkUnavailable):
        sink.store("v2", [stored_event("2")])
    deadline = time.monotonic() + 5
    while sink.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert False is sink.ready()


def test_a_topic_librdkafka_refuses_is_unavailable_naming_it(
    kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """produce_batch raises for the whole batch: each event alone says why, a 503 not a 500."""
    topic = "t" * 1000  # librdkafka's limit on a topic name is 512 bytes
    sink = make_sink(f"127.0.0.1:{free_port()}", {**kafka_topics, "v2": topic},
                     **{"message_timeout_ms": "300"})
    sinks.append(sink)
    with pytest.raises(SinkUnavailable, match=f"kafka: cannot produce to {topic}: .*Invalid"):
        sink.store("v2", [stored_event("2"), stored_event("2")])


@pytest.mark.system
def test_a_peer_that_is_not_kafka_makes_the_batch_unavailable(
    kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """bootstrap_servers pointing at something answering garbage: a 503, within the bound."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def answer_garbage() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\xff" * 64)

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        sink = make_sink(f"127.0.0.1:{listener.getsockname()[1]}", kafka_topics,
                         **{"message_timeout_ms": "500"})
        sinks.append(sink)
        started = time.monotonic()
        with pytest.raises(SinkUnavailable):
            sink.store("v2", [stored_event("2")])
        waited = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert waited < 1.0 + 0.5


@pytest.mark.system
def test_after_a_fatal_producer_error_a_new_producer_stores_the_batch(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """librdkafka's fatal state: the sink replaces the producer and the batch is stored once."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    assert [STORED] == sink.store("v2", [stored_event("2")])
    first = sink.producer
    raise_fatal_error(first, "fenced by the test")
    event = stored_event("2")
    with caplog.at_level("WARNING", logger="baseplate_events.collector.sinks.kafka"):
        reasons = sink.store("v2", [event])
    stored = count_keys(read_topics(kafka_broker.bootstrap, kafka_topics.values()))
    assert [STORED] == reasons
    assert first is not sink.producer
    assert 1 == stored[event.uuid]
    assert [f"kafka sink: producer recreated after: kafka: cannot produce to "
            f"{kafka_topics['v2']}: Unable to produce message: Local: Fatal error"] == [
        r.getMessage() for r in caplog.records if "recreated" in r.getMessage()]


@pytest.mark.system
def test_a_fatal_error_while_a_round_waits_replaces_the_producer_and_stores_the_batch(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """confluent-kafka raises a fatal error from poll: the round's batch is tried again."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    assert [STORED] == sink.store("v2", [stored_event("2")])
    first = sink.producer
    event = stored_event("2")
    answers: List[object] = []
    kafka_broker.pause()
    try:
        thread = threading.Thread(target=lambda: answers.append(sink.store("v2", [event])))
        thread.start()
        while not sink._rounds._leading:
            time.sleep(0.01)
        raise_fatal_error(first, "fenced by the test")
        time.sleep(0.3)
    finally:
        kafka_broker.resume()
    thread.join(10)
    stored = count_keys(read_topics(kafka_broker.bootstrap, kafka_topics.values()))
    assert [[STORED]] == answers
    assert first is not sink.producer
    assert 1 <= stored[event.uuid]


@pytest.mark.system
def test_a_fatal_error_seen_by_ready_turns_it_off_until_a_new_producer_stores(
    kafka_broker: TansuBroker, kafka_topics: Dict[str, str], sinks: List[KafkaSink]
) -> None:
    """ready()'s poll meets the fatal error (raised once): not ready till a new producer."""
    sink = make_sink(kafka_broker.bootstrap, kafka_topics)
    sinks.append(sink)
    assert [STORED] == sink.store("v2", [stored_event("2")])
    first = sink.producer
    raise_fatal_error(first, "fenced by the test")
    assert [False, False] == [sink.ready(), sink.ready()]
    assert [STORED] == sink.store("v2", [stored_event("2")])
    assert first is not sink.producer
    assert True is sink.ready()


def test_a_broker_binary_that_is_not_there_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$CALF_TANSU_BIN naming no executable: BrokerUnavailable saying so, no broker started."""
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-tansu"))
    with pytest.raises(BrokerUnavailable) as caught:
        TansuBroker.start(tmp_path)
    assert (f"CALF_TANSU_BIN={str(tmp_path / 'no-tansu')!r} does not point at an executable "
            "file.") == str(caught.value)


def test_a_missing_bootstrap_servers_setting_names_the_key() -> None:
    """sink = kafka without kafka.bootstrap_servers is a start-up error naming the key."""
    with pytest.raises(ConfigError) as caught:
        KafkaSettings.from_options({})
    assert ("kafka.bootstrap_servers: required with sink = kafka, e.g. "
            "kafka.bootstrap_servers = kafka-1:9092,kafka-2:9092") == str(caught.value)


def test_weakening_acks_is_refused() -> None:
    """kafka.producer.acks = 1 would break the 2xx-only-when-stored promise: refused."""
    with pytest.raises(ConfigError) as caught:
        KafkaSettings.from_options({"bootstrap_servers": "k:9092", "producer.acks": "1"})
    assert ("kafka.producer.acks: the Kafka sink needs acks=all (an idempotent producer "
            "acknowledged by every in-sync replica); remove the key") == str(caught.value)


def test_a_bad_message_timeout_names_the_key() -> None:
    """kafka.message_timeout_ms must be a positive integer."""
    with pytest.raises(ConfigError) as caught:
        KafkaSettings.from_options({"bootstrap_servers": "k:9092",
                                    "message_timeout_ms": "soon"})
    assert ("kafka.message_timeout_ms: expected a positive integer (milliseconds), "
            "got 'soon'") == str(caught.value)


def test_an_unknown_option_names_the_key_and_the_known_ones() -> None:
    """A misspelt kafka.* option stops start-up instead of being ignored."""
    with pytest.raises(ConfigError) as caught:
        KafkaSettings.from_options({"bootstrap_servers": "k:9092", "topic.v3": "x"})
    assert ("kafka.topic.v3: unknown option (did you mean kafka.topic.v2?); known: "
            "kafka.bootstrap_servers, "
            "kafka.message_timeout_ms, kafka.topic.v1, kafka.topic.v2, kafka.topic.v2j and "
            "kafka.producer.<librdkafka option>") == str(caught.value)


def test_an_unknown_librdkafka_option_is_a_config_error() -> None:
    """A misspelt kafka.producer.* option stops start-up with librdkafka's reason."""
    with pytest.raises(ConfigError) as caught:
        create_sink("kafka", {"bootstrap_servers": "k:9092", "producer.linger.msec": "5"})
    assert ("kafka.producer.*: librdkafka refused the configuration: No such configuration "
            "property: \"linger.msec\"") == str(caught.value)


def test_settings_pass_through_to_the_producer() -> None:
    """Topics, message timeout and extra options reach librdkafka; idempotence stays on."""
    settings = KafkaSettings.from_options({
        "bootstrap_servers": "k1:9092,k2:9092", "topic.v2": "site.events",
        "message_timeout_ms": "1500", "producer.compression.type": "lz4"})
    assert {"v1": "events.v1", "v2": "site.events", "v2j": "events.v2j"} == dict(settings.topics)
    assert {"linger.ms": "1", "compression.type": "lz4", "enable.idempotence": "true",
            "acks": "all", "delivery.report.only.error": True,
            "bootstrap.servers": "k1:9092,k2:9092",
            "message.timeout.ms": 1500} == settings.producer_config()


def test_reporting_every_delivery_is_refused() -> None:
    """The sink knows a batch is delivered when the producer is empty: success reports stay off."""
    with pytest.raises(ConfigError) as caught:
        KafkaSettings.from_options({"bootstrap_servers": "k:9092",
                                    "producer.delivery.report.only.error": "false"})
    assert ("kafka.producer.delivery.report.only.error: the Kafka sink needs "
            "delivery.report.only.error=true (a batch is known delivered when the producer is "
            "empty; reporting each success costs CPU per event); remove the key"
            ) == str(caught.value)
