"""The seed documentation's samples for building and queueing events, run as written.

The only changes: ``baseplate.events`` is ``baseplate_events``, and the seed's
handler puts ``event`` (its text says ``ev2``, a name it never defines). The
queues are created first at stock-kernel sizes, as the publisher would, so the
samples' default-sized ``EventQueue`` opens the existing queue.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.TSerialization import deserialize

from baseplate_events import Event as LegacyEvent
from baseplate_events import EventQueue, serialize_v2_event
from event_schemas.event.ttypes import Event


class MiniBaseplate:
    """What baseplate.add_to_context does: a factory's object on each request's context."""

    def __init__(self):
        self.factories = {}

    def add_to_context(self, name, factory):
        self.factories[name] = factory

    def make_context(self):
        context = type("RequestContext", (), {})()
        for name, factory in self.factories.items():
            setattr(context, name, factory.make_object_for_context(name, None))
        return context


@pytest.fixture
def seed_queue(open_queues):
    """Create /events-<name> at stock sizes for the seed's hard-coded queue name."""
    created = []

    def create(name):
        created.append(open_queues("/events-" + name, 10, 8192))
        return created[-1]

    return create


def test_thrift_v2_sample(seed_queue):
    """The seed's Thrift v2 sample: make_wsgi_app + my_handler put a decodable event."""
    reader = seed_queue("v2")
    baseplate = MiniBaseplate()

    def make_wsgi_app(app_config):
        queue = EventQueue("v2", event_serializer=serialize_v2_event)
        baseplate.add_to_context("events_v2", queue)
        return queue

    def my_handler(request):
        event = Event(
            source="baseplate",
            action="test",
            noun="baseplate",
            client_timestamp=time.time() * 1000,
            uuid=str(uuid.uuid4()),
        )
        request.events_v2.put(event)
        return event

    queue = make_wsgi_app({})
    try:
        sent = my_handler(baseplate.make_context())
    finally:
        queue.close()
    received = deserialize(Event(), reader.get(timeout=0), TJSONProtocolFactory())
    assert int(sent.client_timestamp) == received.client_timestamp
    assert ("baseplate", "test", "baseplate", sent.uuid) == (
        received.source,
        received.action,
        received.noun,
        received.uuid,
    )


def test_legacy_context_sample(seed_queue):
    """The seed's context sample: EventQueue("production") via add_to_context."""
    reader = seed_queue("production")
    baseplate = MiniBaseplate()
    event_queue = EventQueue("production")
    baseplate.add_to_context("events_production", event_queue)

    def some_service_method(context):
        event = LegacyEvent("topic", "type")
        event.set_field("key", "value")
        context.events_production.put(event)
        return event

    try:
        sent = some_service_method(baseplate.make_context())
    finally:
        event_queue.close()
    document = json.loads(reader.get(timeout=0))
    assert {"key": "value"} == document["payload"]
    assert str(sent.id) == document["uuid"]
