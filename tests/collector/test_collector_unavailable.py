"""503 means only that the sink is unavailable; a bug on a batch is a 500 with the reason.

Each sink's infrastructure failures (a full disk, a file it may not write, a
lock held past its timeout, a broker down, a producer being recreated) are
``SinkUnavailable``, answered 503 with ``Retry-After``; anything else raised
while handling a batch is a 500 naming the exception. Both log lines are
rate-limited: one a minute per reason, with a count. Through WebTest, on real
SQLite files, real directories, a real tmpfs and a real broker.
"""
from __future__ import annotations

import base64
import email.utils
import gzip
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from baseplate_events import serialize_v2_event
from baseplate_events.collector import make_app
from baseplate_events.collector.service.app import make_configurator
from baseplate_events.collector.service.intake import sign
from baseplate_events.collector.sinks import Outcome, Sink, StoredEvent
from demo_app.page_store import PageStore
from event_schemas.event.ttypes import Event
from tests.conftest import fill_disk
from tests.support.users import needs_root, run_as, throwaway_uid

SECRET = b"a collector answers test secret."
KEYS = f"demo={base64.b64encode(SECRET).decode()}"


def v2j_batch(count: int = 1, noun: str = "button") -> bytes:
    return b"[" + b",".join(serialize_v2_event(Event(
        source="shop", action="click", noun=noun, client_timestamp=int(time.time() * 1000),
        uuid=str(uuid.uuid4()))) for _ in range(count)) + b"]"


def post(app: Any, body: bytes, path: str = "/v2j") -> Any:
    return app.post(path, gzip.compress(body), expect_errors=True, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(time.time(), usegmt=True),
        "X-Signature": f"key=demo, mac={sign(SECRET, body)}"})


_MADE: List[Any] = []


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    """Close the collectors a test made (their sinks, and what their log held back)."""
    yield
    while _MADE:
        _MADE.pop().registry["collector"].close()


def webtest(settings: Dict[str, Any], **options: Any) -> Any:
    from webtest import TestApp

    app = make_app({"keys": KEYS, "retry_after": "7", **settings}, **options)
    _MADE.append(app)
    return TestApp(app)


def answer(response: Any) -> Tuple[int, Optional[str], str]:
    return response.status_int, response.headers.get("Retry-After"), response.json["error"]


def answer_in_a_forked_worker(settings: Dict[str, Any], body: bytes) -> List[Any]:
    """Make the app here, then answer ``body`` in a forked child (a gunicorn ``--preload``
    worker, which makes its own sink) running as a throwaway uid, who may not write the
    sink's directory (root's: 0755, or 0700 once the JSONL sink made it private)."""
    from webtest import TestApp

    config = make_configurator({"keys": KEYS, "retry_after": "7", **settings})
    app = TestApp(config.make_wsgi_app())
    assert 200 == post(app, v2j_batch()).status_int  # the parent's sink works

    def work() -> List[Any]:
        return list(answer(post(app, body)))

    uid = throwaway_uid()
    try:
        return run_as(uid, uid, work)  # type: ignore[no-any-return]
    finally:
        config.registry["collector"].close()


@pytest.fixture
def unwritable() -> Iterator[Path]:
    """A directory of root's that anyone may enter (pytest's are private)."""
    directory = Path(tempfile.mkdtemp(prefix="unwritable-", dir="/tmp"))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory)


# -- SQLite -------------------------------------------------------------------------------


def test_sqlite_locked_past_the_busy_timeout_is_a_503(tmp_path: Path) -> None:
    """Another writer holds the database: after sqlite.busy_timeout, 503 with Retry-After."""
    path = tmp_path / "events.db"
    app = webtest({"sink": "sqlite", "sqlite.path": str(path), "sqlite.busy_timeout": "0.1"})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = post(app, v2j_batch())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (503, "7", f"the sink is unavailable: sqlite: database is locked (SQLITE_BUSY; "
                      f"{path})") == answer(response)
    assert 200 == post(app, v2j_batch()).status_int


@pytest.mark.system  # mounts a tmpfs
def test_sqlite_on_a_full_disk_is_a_503(small_disk: str) -> None:
    """The database's file system is full: 503 with Retry-After, never a 500 or a 422."""
    path = os.path.join(small_disk, "events.db")
    app = webtest({"sink": "sqlite", "sqlite.path": path})
    fill_disk(os.path.join(small_disk, "filler"))
    response = post(app, v2j_batch(200, noun="n" * 2000))
    assert (503, "7", f"the sink is unavailable: sqlite: database or disk is full (SQLITE_FULL; "
                      f"{path})") == answer(response)


@needs_root
@pytest.mark.system  # forks a worker as another user
def test_sqlite_a_worker_may_not_write_is_a_503(unwritable: Path) -> None:
    """A forked worker whose user may not write the database: 503 with Retry-After."""
    path = unwritable / "events.db"
    settings = {"sink": "sqlite", "sqlite.path": str(path)}
    status, retry_after, error = answer_in_a_forked_worker(settings, v2j_batch())
    # the database is private (0600): the worker's user cannot even open it
    assert (503, "7", f"the sink is unavailable: sqlite: cannot open {path}: unable to open "
                      f"database file") == (status, retry_after, error)


# -- JSONL --------------------------------------------------------------------------------


@pytest.mark.system  # mounts a tmpfs
def test_jsonl_on_a_full_disk_is_a_503(small_disk: str) -> None:
    """The directory's file system is full: 503 with Retry-After."""
    directory = os.path.join(small_disk, "events")
    app = webtest({"sink": "jsonl", "jsonl.directory": directory})
    fill_disk(os.path.join(small_disk, "filler"))
    response = post(app, v2j_batch(50, noun="n" * 2000))
    assert (503, "7", f"the sink is unavailable: jsonl: cannot write to {directory}: No space "
                      f"left on device") == answer(response)


@needs_root
@pytest.mark.system  # forks a worker as another user
def test_jsonl_a_worker_may_not_write_is_a_503(unwritable: Path) -> None:
    """A forked worker whose user may not create files in the directory: 503."""
    settings = {"sink": "jsonl", "jsonl.directory": str(unwritable)}
    status, retry_after, error = answer_in_a_forked_worker(settings, v2j_batch())
    assert (503, "7", f"the sink is unavailable: this process cannot make its sink: "
                      f"jsonl.directory: cannot open {unwritable}: Permission denied") == (
        status, retry_after, error)


def test_jsonl_held_by_another_batch_past_its_timeout_is_a_503(tmp_path: Path) -> None:
    """Another thread's batch holds the sink past jsonl.timeout: 503 with Retry-After."""
    directory = tmp_path / "events"
    app = webtest({"sink": "jsonl", "jsonl.directory": str(directory), "jsonl.timeout": "0.1"})
    sink = app.app.registry["collector"].sink
    with sink._lock:  # as a batch being written (a slow disk) holds it
        response = post(app, v2j_batch())
    assert (503, "7", f"the sink is unavailable: jsonl: another batch held {directory} for "
                      f"over 0.1 s") == answer(response)
    assert 200 == post(app, v2j_batch()).status_int


# -- Kafka --------------------------------------------------------------------------------


@pytest.mark.system
def test_kafka_a_producer_recreated_while_the_broker_is_down_is_a_503(
    kafka_broker: Any, kafka_topics: Dict[str, str]
) -> None:
    """A fatal producer error, then a new producer the paused broker does not answer: 503."""
    from tests.support.kafka import raise_fatal_error

    app = webtest({"sink": "kafka", "kafka.bootstrap_servers": kafka_broker.bootstrap,
                   "kafka.message_timeout_ms": "500",
                   **{f"kafka.topic.{stream}": t for stream, t in kafka_topics.items()}})
    sink = app.app.registry["collector"].sink
    try:
        deadline = time.monotonic() + 20
        warm = post(app, v2j_batch())  # the topic is made on first use: may take a retry
        while warm.status_int == 503 and time.monotonic() < deadline:
            warm = post(app, v2j_batch())
        assert 200 == warm.status_int, warm.text
        first = sink.producer
        raise_fatal_error(first, "fenced by the test")
        kafka_broker.pause()
        try:
            response = post(app, v2j_batch())
        finally:
            kafka_broker.resume()
        batch = v2j_batch()
        deadline = time.monotonic() + 20
        again = post(app, batch)  # the publisher sends it again until the broker is back
        while again.status_int == 503 and time.monotonic() < deadline:
            again = post(app, batch)
    finally:
        sink.close()
    status, retry_after, error = answer(response)
    assert (503, "7") == (status, retry_after), error
    assert error.startswith("the sink is unavailable: kafka: "), error
    assert first is not sink.producer
    assert 200 == again.status_int, again.text


@pytest.mark.system
def test_kafka_a_producer_that_cannot_be_recreated_is_a_503(
    kafka_broker: Any, kafka_topics: Dict[str, str]
) -> None:
    """A fatal producer error, and librdkafka refusing to make another: 503, not a 500."""
    from tests.support.kafka import raise_fatal_error

    app = webtest({"sink": "kafka", "kafka.bootstrap_servers": kafka_broker.bootstrap,
                   **{f"kafka.topic.{stream}": t for stream, t in kafka_topics.items()}})
    sink = app.app.registry["collector"].sink
    try:
        raise_fatal_error(sink.producer, "fenced by the test")
        # what the process can no longer do (here: read a CA file that went away)
        sink.settings.producer.update({"security.protocol": "ssl",
                                       "ssl.ca.location": "/nonexistent/ca.pem"})
        response = post(app, v2j_batch())
    finally:
        sink.close()
    status, retry_after, error = answer(response)
    assert (503, "7") == (status, retry_after), error
    assert error.startswith("the sink is unavailable: kafka: cannot recreate the producer "
                            "(after "), error
    # the rest is OpenSSL's words, which change with its version
    assert ("librdkafka refused the configuration: Failed to create producer: ssl.ca.location "
            "failed: ") in error, error


# -- bugs: 500 with the reason ------------------------------------------------------------


class BrokenSink(Sink):
    """A sink with a bug: ``store`` raises what it is given (a deliberately broken sink)."""

    reads_documents = False

    def __init__(self, error: Exception) -> None:
        self.error = error

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Outcome]:
        raise self.error



def test_a_sink_bug_is_a_500_with_the_reason_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not SinkUnavailable: 500 naming the exception; the traceback goes to the log only."""
    app = webtest({}, sink=BrokenSink(KeyError("partition")))
    with caplog.at_level(logging.ERROR, logger="baseplate_events.collector.service"):
        response = post(app, v2j_batch())
    assert (500, None, "internal error: KeyError: 'partition'") == answer(response)
    assert "Traceback" not in response.text
    assert ["collector: answered 500 to a batch on v2j: internal error: KeyError: 'partition' "
            "(1 time in the last minute)"] == [r.getMessage() for r in caplog.records]
    assert caplog.records[0].exc_info is not None


class ShortSink(Sink):
    """A sink with a bug: it answers no outcome at all, whatever the batch."""

    def store(self, stream: str, events: Sequence[StoredEvent]) -> List[Outcome]:
        return []


def test_a_sink_answering_too_few_outcomes_is_a_500_not_a_200() -> None:
    """A sink that loses track of events is a bug (500), never an acknowledgement."""
    response = post(webtest({}, sink=ShortSink()), v2j_batch())
    assert (500, None, "internal error: RuntimeError: the sink gave 0 outcomes for 1 events"
            ) == answer(response)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_500_log_lines_are_one_a_minute_per_reason_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Five 500s for one reason in a minute: one line, then the next minute's says 4 times."""
    config = make_configurator({"keys": KEYS}, sink=BrokenSink(ValueError("bug")))
    clock = FakeClock()
    config.registry["collector"].rate_limited.clock = clock
    from webtest import TestApp

    app = TestApp(config.make_wsgi_app())
    with caplog.at_level(logging.ERROR, logger="baseplate_events.collector.service"):
        statuses = [post(app, v2j_batch()).status_int for _ in range(4)]
        clock.now += 61
        statuses.append(post(app, v2j_batch()).status_int)
    assert [500] * 5 == statuses
    assert ["collector: answered 500 to a batch on v2j: internal error: ValueError: bug "
            "(1 time in the last minute)",
            "collector: answered 500 to a batch on v2j: internal error: ValueError: bug "
            "(4 times in the last minute)"] == [r.getMessage() for r in caplog.records]


def test_a_count_held_back_is_logged_at_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    """Three 500s, then the collector stops within the minute: the last line says 2 more."""
    config = make_configurator({"keys": KEYS}, sink=BrokenSink(ValueError("bug")))
    from webtest import TestApp

    app = TestApp(config.make_wsgi_app())
    with caplog.at_level(logging.ERROR, logger="baseplate_events.collector.service"):
        for _ in range(3):
            post(app, v2j_batch())
        config.registry["collector"].close()
    assert ["collector: answered 500 to a batch on v2j: internal error: ValueError: bug "
            "(1 time in the last minute)",
            "collector: answered 500 to a batch on v2j: internal error: ValueError: bug "
            "(2 more times before stopping)"] == [r.getMessage() for r in caplog.records]


def test_503_log_lines_are_one_a_minute_per_reason_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Three 503s for a locked database in a minute make one warning line."""
    path = tmp_path / "events.db"
    app = webtest({}, sink=PageStore(str(path), busy_timeout=0.05))  # the demo's, with a journal
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="baseplate_events.collector.service"):
            statuses = [post(app, v2j_batch()).status_int for _ in range(3)]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [503] * 3 == statuses
    assert [f"collector: sink unavailable, answered 503: sqlite: database is locked "
            f"(SQLITE_BUSY; {path}) (1 time in the last minute)",
            "collector: failed to count a response: OperationalError: database is locked "
            "(1 time in the last minute)"] == [r.getMessage() for r in caplog.records]


def test_an_exception_outside_the_batch_handling_is_a_json_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A view that raises (here /readyz's sink property failing oddly) is a JSON 500."""
    config = make_configurator({"keys": KEYS}, sink=BrokenSink(ValueError("x")))

    def broken_view(request: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    config.add_route("broken", "/broken")
    config.add_view(broken_view, route_name="broken")
    from webtest import TestApp

    app = TestApp(config.make_wsgi_app())
    with caplog.at_level(logging.ERROR, logger="baseplate_events.collector.service"):
        response = app.get("/broken", expect_errors=True)
    assert (500, {"error": "internal error: ZeroDivisionError: division by zero"}) == (
        response.status_int, json.loads(response.text))
    assert ["collector: answered 500 to GET /broken: internal error: ZeroDivisionError: "
            "division by zero (1 time in the last minute)"] == [
        r.getMessage() for r in caplog.records]
