"""The Sink base class: each event's outcome, and what a sink declares it can do."""
from __future__ import annotations

from typing import List, Sequence

import pytest

from baseplate_events.collector.sinks import (DUPLICATE, STORED, Outcome, Sink, SinkUnavailable,
                                              StoredEvent)
from baseplate_events.collector.sinks.kafka import retry_once
from baseplate_events.collector.sinks.sqlite import SQLiteSink

UUID = "a0000000-0000-4000-8000-000000000001"


def event(uuid: str = UUID) -> StoredEvent:
    """A v1 event the SQLite sink can store."""
    return StoredEvent(uuid, "1", b'{"event_topic": "t"}', {"event_topic": "t"})


def test_sqlite_says_a_second_copy_is_a_duplicate():
    """The same uuid stored twice: STORED, then DUPLICATE."""
    sink = SQLiteSink()
    try:
        assert ([STORED], [DUPLICATE]) == (sink.store("v1", [event()]), sink.store("v1", [event()]))
    finally:
        sink.close()


def test_the_base_sink_probes_with_ready():
    """A sink that only says it is not ready fails its probe with that reason."""
    class NotReady(Sink):
        def ready(self) -> bool:
            return False

    with pytest.raises(SinkUnavailable) as raised:
        NotReady().probe()
    assert "the sink says it is not ready" == str(raised.value)


def test_a_sink_without_store_says_so():
    """Sink.store must be implemented; the base class names the subclass that did not."""
    class Empty(Sink):
        pass

    with pytest.raises(NotImplementedError) as raised:
        Empty().store("v1", [])
    assert "Empty does not implement store()" == str(raised.value)


def test_an_outcome_reads_as_what_happened():
    """repr of each outcome says what happened to the event."""
    assert ["STORED", "DUPLICATE", "Outcome.refused('too big')"] == [
        repr(STORED), repr(DUPLICATE), repr(Outcome.refused("too big"))]


def test_retry_once_tries_a_second_time_only():
    """The first failure is retried; the second one propagates."""
    calls: List[int] = []

    def attempt() -> str:
        calls.append(1)
        raise SinkUnavailable(f"try {len(calls)}")

    with pytest.raises(SinkUnavailable) as raised:
        retry_once(attempt, SinkUnavailable)
    assert (2, "try 2") == (len(calls), str(raised.value))


def test_retry_once_returns_the_second_attempts_answer():
    """A failure then a success: the success's value."""
    answers: Sequence[object] = [SinkUnavailable("broken"), "stored"]
    calls: List[int] = []

    def attempt() -> str:
        answer = answers[len(calls)]
        calls.append(1)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    assert "stored" == retry_once(attempt, SinkUnavailable)


def test_the_demos_store_takes_a_file_the_plain_sink_made(tmp_path):
    """A file made by the library's sink gains the page's columns when the demo opens it."""
    from demo_app.page_store import PageStore

    path = str(tmp_path / "events.sqlite3")
    plain = SQLiteSink(path)
    plain.store("v1", [event()])
    plain.close()
    store = PageStore(path)
    try:
        second = StoredEvent("a0000000-0000-4000-8000-000000000002", "1",
                             b'{"event_topic": "t", "event_type": "e"}',
                             {"event_topic": "t", "event_type": "e"})
        assert [STORED] == store.store("v1", [second])
        assert [{"source": None, "action": None, "count": 1},
                {"source": "t", "action": "e", "count": 1}] == sorted(
            store.summary()["counts"], key=lambda c: str(c["source"]))
    finally:
        store.close()


def test_the_plain_sink_takes_a_file_the_demo_made(tmp_path):
    """A file with the page's columns takes events from the library's sink (left empty)."""
    from demo_app.page_store import PageStore

    path = str(tmp_path / "events.sqlite3")
    PageStore(path).close()
    plain = SQLiteSink(path)
    try:
        assert [[STORED], [DUPLICATE]] == [plain.store("v1", [event()]) for _ in range(2)]
    finally:
        plain.close()
