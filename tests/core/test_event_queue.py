"""EventQueue: the seed's queueing API over a real POSIX queue."""
from __future__ import annotations

import json

import pytest
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.TSerialization import deserialize, serialize

from baseplate_events import (
    MAX_EVENT_SIZE,
    MAX_QUEUE_SIZE,
    Event,
    EventQueue,
    EventQueueFullError,
    EventSerializationError,
    EventTooLargeError,
    serialize_v1_event,
    serialize_v2_event,
)
from event_schemas.event.ttypes import Event as EventV2
from event_schemas.event.ttypes import Experiment, User


@pytest.fixture
def make_queue(queue_name, reader):
    """EventQueues on the reader's queue; closed on teardown."""
    made = []

    def factory(serializer=serialize_v1_event, **kwargs):
        queue = EventQueue(queue_name, event_serializer=serializer, **kwargs)
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        queue.close()


def sample_v2_event() -> EventV2:
    return EventV2(
        source="baseplate",
        action="test",
        noun="baseplate",
        client_timestamp=1700000000123,
        uuid="7b5a2c4e-1d3f-4e8a-9b6c-0f1e2d3c4b5a",
        user=User(user_id="t2_1", logged_in=True, features={"a"}),
        experiments=[Experiment(id=1, name="exp", variant="control", bucket=3)],
        tags={"k": "v", "é": "\"quoted\"\n"},
        value=0.25,
        payload=b"\x00\x01",
    )


def test_constants_match_baseplate():
    """The default sizes are baseplate's."""
    assert (102400, 10000) == (MAX_EVENT_SIZE, MAX_QUEUE_SIZE)


def test_v2_event_round_trips_byte_for_byte(make_queue, reader):
    """A v2 event on the queue is exactly Thrift's TJSONProtocol bytes."""
    queue = make_queue(serialize_v2_event)
    event = sample_v2_event()
    queue.put(event)
    message = reader.get(timeout=0)
    assert serialize(event, TJSONProtocolFactory()) == message
    assert event == deserialize(EventV2(), message, TJSONProtocolFactory())


def test_v1_event_round_trips_byte_for_byte(make_queue, reader):
    """A v1 event on the queue is the JSON baseplate writes."""
    queue = make_queue()
    event = Event("topic", "type")
    event.set_field("n", 1)
    queue.put(event)
    message = reader.get(timeout=0)
    assert serialize_v1_event(event) == message
    assert {
        "event_topic": "topic",
        "event_type": "type",
        "event_ts": event.timestamp,
        "uuid": str(event.id),
        "payload": {"n": 1},
    } == json.loads(message)


def test_existing_queue_sizes_rule(queue_name, open_queues):
    """The size limit is the existing queue's real one, not the default."""
    open_queues("/events-" + queue_name, 2, 300)
    queue = EventQueue(queue_name, event_serializer=serialize_v2_event)
    try:
        assert (2, 300) == (queue.max_messages, queue.max_message_size)
    finally:
        queue.close()


def test_too_large_event_is_refused(make_queue, reader):
    """An event bigger than the queue's message size raises and queues nothing."""
    queue = make_queue(serialize_v2_event)
    event = EventV2(source="x" * 9000)
    with pytest.raises(EventTooLargeError) as info:
        queue.put(event)
    size = len(serialize_v2_event(event))
    assert f"event is {size} bytes; this queue takes at most 8192" == str(info.value)
    assert (size, 8192) == (info.value.size, info.value.max_size)
    assert 0 == reader.depth


def test_full_queue_raises(make_queue, reader):
    """Once the queue holds max_messages, put raises EventQueueFullError at once."""
    queue = make_queue(serialize_v2_event)
    for _ in range(reader.max_messages):
        queue.put(EventV2(source="s"))
    with pytest.raises(EventQueueFullError) as info:
        queue.put(EventV2(source="s"))
    assert (
        f"the event queue /events-{queue.name} is full (10 messages); is its publisher "
        "running and reaching the collector?" == str(info.value)
    )


def test_put_timeout_waits_then_raises(make_queue, reader):
    """With put_timeout, a full queue is retried for that long before raising."""
    import time

    queue = make_queue(serialize_v2_event, put_timeout=0.05)
    for _ in range(reader.max_messages):
        queue.put(EventV2(source="s"))
    started = time.monotonic()
    with pytest.raises(EventQueueFullError):
        queue.put(EventV2(source="s"))
    assert time.monotonic() - started >= 0.05


def test_negative_put_timeout_is_refused(queue_name):
    """put_timeout must be a number of seconds >= 0."""
    with pytest.raises(ValueError) as info:
        EventQueue(queue_name, put_timeout=-1)
    assert "put_timeout: expected seconds >= 0, got -1" == str(info.value)


def test_wrong_type_names_field_and_queues_nothing(make_queue, reader):
    """A wrong type in a Thrift field raises naming the field; nothing is queued."""
    queue = make_queue(serialize_v2_event)
    with pytest.raises(EventSerializationError) as info:
        queue.put(EventV2(source="s", user=User(logged_in="yes")))
    assert "Event.user.logged_in: expected a bool, got str" == str(info.value)
    assert 0 == reader.depth


def test_unserializable_v1_field_names_field(make_queue, reader):
    """A v1 payload value JSON cannot encode raises naming the field."""
    queue = make_queue()
    event = Event("topic", "type")
    event.set_field("when", object(), kind=__import__("baseplate_events").FieldKind.OBFUSCATED)
    with pytest.raises(EventSerializationError) as info:
        queue.put(event)
    assert "payload.obfuscated_data.when: a object cannot be written as JSON" == str(info.value)
    assert 0 == reader.depth


class NotJsonEvent:
    def serialize(self):
        return "event_topic=t"


class CustomV1Event(Event):
    def serialize(self):
        return '{"custom": 1}'


def test_v1_serialize_output_that_is_not_json_queues_nothing(make_queue, reader):
    """An object whose serialize() is not one JSON object never reaches the queue."""
    queue = make_queue()
    with pytest.raises(EventSerializationError):
        queue.put(NotJsonEvent())
    assert 0 == reader.depth


def test_v1_subclass_output_is_queued(make_queue, reader):
    """An Event subclass's own serialize() output is what the queue carries."""
    make_queue().put(CustomV1Event("t", "e"))
    assert b'{"custom": 1}' == reader.get(timeout=0)


def test_make_object_for_context_returns_queue(make_queue):
    """EventQueue is a baseplate ContextFactory: the context object is the queue."""
    queue = make_queue()
    assert queue is queue.make_object_for_context("events_v2", None)


def test_works_with_baseplate_add_to_context_style(make_queue, reader):
    """A context built the way baseplate does it reaches put()."""
    queue = make_queue(serialize_v2_event)

    class Context:
        pass

    context = Context()
    for name, factory in {"events_v2": queue}.items():
        setattr(context, name, factory.make_object_for_context(name, None))
    context.events_v2.put(EventV2(source="ctx"))
    assert b'{"1":{"str":"ctx"}}' == reader.get(timeout=0)
