"""What a user does: the publisher feeds a collector; ``baseplate-events-tail`` says what arrived.

Real parts throughout: events on a real POSIX queue (10 x 8192, unlinked on
teardown); ``python -m publisher`` as a subprocess; the collector under
gunicorn with two workers, onto each sink (Kafka on the Tansu broker, JSONL
files, one SQLite file); and ``baseplate-events-tail`` as a subprocess, with
the collector's own ``--sink`` and ``--option`` flags. Delivery is at least
once, so distinct uuids are counted.
"""
from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from baseplate_events import serialize_v2_event
from baseplate_events.mqueue.posix import MessageQueue
from tests.conftest import TEST_MAX_MESSAGE_SIZE, TEST_MAX_MESSAGES
from tests.support.kafka import ROOT, GunicornCollector
from tests.support.publisher import PublisherProcess, config_file, put_all
from tests.system.test_collector import v2_event

pytestmark = pytest.mark.system

KEY = "tail"
EVENTS = 300
TAIL = [sys.executable, "-m", "baseplate_events.collector.tail"]


class Pipeline:
    """A queue, a publisher and a two-worker gunicorn collector onto one sink."""

    def __init__(self, queue: MessageQueue, queue_name: str, sink_flags: List[str],
                 tmp_path: Path) -> None:
        self.queue = queue
        self.sink_flags = sink_flags
        secret = secrets.token_bytes(32)
        keys = tmp_path / "keys.ini"
        keys.write_text(f"[event-publisher:keys]\nkey.name = {KEY}\n"
                        f"key.secret = {base64.b64encode(secret).decode()}\n")
        settings = {"publisher_config": str(keys), "retry_after": "1"}
        for name, value in zip(sink_flags[0::2], sink_flags[1::2]):
            if name == "--sink":
                settings["sink"] = value
            else:
                key, _, option = value.partition("=")
                settings[key] = option
        self.collector = GunicornCollector(settings, tmp_path / "gunicorn.log", workers=2)
        config = config_file(queue_name, f"127.0.0.1:{self.collector.port}", tmp_path, **{
            "collector.version": "2", "key.name": KEY,
            "key.secret": base64.b64encode(secret).decode(),
            "max_queue_size": str(TEST_MAX_MESSAGES), "max_event_size": str(TEST_MAX_MESSAGE_SIZE)})
        self.publisher = PublisherProcess(queue_name, config, tmp_path / "publisher.log").start()

    def put(self, count: int) -> List[str]:
        """Put ``count`` v2 events of the sample schema; their uuids."""
        events = [v2_event() for _ in range(count)]
        put_all(self.queue, [serialize_v2_event(e) for e in events])
        return [e.uuid for e in events]

    def stop(self) -> Tuple[int, "int | None"]:
        """Stop the publisher (it delivers what it holds), then the collector (it flushes)."""
        status = self.publisher.stop(30)
        self.publisher.kill()
        return status, self.collector.stop()

    def logs(self) -> str:
        return self.collector.log() + self.publisher.log()


def tail(flags: List[str], *extra: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([*TAIL, *flags, *extra], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def pipeline_for(queue_name: str, open_queues: Callable[..., MessageQueue],
                 tmp_path: Path) -> Iterator[Callable[[List[str]], Pipeline]]:
    made: List[Pipeline] = []

    def make(sink_flags: List[str]) -> Pipeline:
        queue = open_queues("/events-" + queue_name)
        made.append(Pipeline(queue, queue_name, sink_flags, tmp_path))
        return made[-1]

    yield make
    for pipeline in made:
        pipeline.stop()


def sink_flags(sink: str, tmp_path: Path, request: pytest.FixtureRequest) -> List[str]:
    if sink == "kafka":
        broker = request.getfixturevalue("kafka_broker")
        topics: Dict[str, str] = request.getfixturevalue("kafka_topics")
        flags = ["--sink", "kafka", "--option", f"kafka.bootstrap_servers={broker.bootstrap}"]
        for stream, topic in topics.items():
            flags += ["--option", f"kafka.topic.{stream}={topic}"]
        return flags
    if sink == "jsonl":
        return ["--sink", "jsonl", "--option", f"jsonl.directory={tmp_path / 'events'}"]
    return ["--sink", "sqlite", "--option", f"sqlite.path={tmp_path / 'events.sqlite3'}"]


@pytest.mark.parametrize("sink", ["kafka", "jsonl", "sqlite"])
def test_the_tail_from_the_beginning_finds_every_event_put(
    sink: str, pipeline_for: Callable[[List[str]], Pipeline], tmp_path: Path,
    request: pytest.FixtureRequest
) -> None:
    """Publisher → gunicorn (2 workers) → sink: --from-beginning prints every uuid put."""
    flags = sink_flags(sink, tmp_path, request)
    pipeline = pipeline_for(flags)
    put = pipeline.put(EVENTS)
    assert (0, 0) == pipeline.stop(), pipeline.logs()
    result = tail(flags, "--from-beginning")
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert 0 == result.returncode, result.stderr
    assert sorted(put) == sorted({event["uuid"] for event in printed}), pipeline.logs()


def test_the_tail_follows_a_live_jsonl_collector_through_its_part_files(
    pipeline_for: Callable[[List[str]], Pipeline], tmp_path: Path,
    request: pytest.FixtureRequest
) -> None:
    """--follow prints the events of the files the workers are still writing, as pending."""
    flags = sink_flags("jsonl", tmp_path, request)
    pipeline = pipeline_for(flags)
    put = pipeline.put(50)
    follower = subprocess.Popen([*TAIL, *flags, "--from-beginning", "--follow", "--limit", "50"],
                                cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    printed = [json.loads(line) for line in out.splitlines()]
    assert 0 == follower.returncode, err
    assert sorted(put) == sorted(event["uuid"] for event in printed), pipeline.logs()
    assert {True} == {event.get("pending") for event in printed}


def test_the_tail_follows_kafka_as_events_arrive(
    pipeline_for: Callable[[List[str]], Pipeline], tmp_path: Path,
    request: pytest.FixtureRequest
) -> None:
    """--follow on Kafka prints events put after it caught up."""
    flags = sink_flags("kafka", tmp_path, request)
    pipeline = pipeline_for(flags)
    before = pipeline.put(5)
    follower = subprocess.Popen([*TAIL, *flags, "--follow", "--limit", "25"], cwd=str(ROOT),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = [json.loads(follower.stdout.readline()) for _ in before]  # type: ignore[union-attr]
        time.sleep(0.5)
        after = pipeline.put(20)
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    printed = first + [json.loads(line) for line in out.splitlines()]
    assert 0 == follower.returncode, err
    assert sorted(before + after) == sorted({event["uuid"] for event in printed}), err
