"""Run the publisher as a real subprocess against a test config, and feed it events.

Test queues stay within stock kernel limits: 10 messages of 2048 bytes.
Timeouts and backoffs are short so the suite stays fast.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Set

from baseplate_events.errors import TimedOutError
from baseplate_events.mqueue.posix import MessageQueue
from publisher.intake.landing import landing_path

if TYPE_CHECKING:
    from tests.support.collector import LocalCollector

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = b"a test secret, 32 bytes long...."
SECRET_B64 = base64.b64encode(SECRET).decode()
QUEUE_MESSAGES = 10
QUEUE_MESSAGE_SIZE = 2048


def config_keys(
    queue_name: str, hostname: str, tmp: Path, **overrides: Optional[str]
) -> Dict[str, str]:
    """The keys of a fast test configuration; an override of None leaves its key out."""
    keys = {
        "collector.hostname": hostname,
        "collector.scheme": "http",
        "collector.version": "2j",
        "collector.timeout": "1",
        "key.name": "TestKey",
        "key.secret": SECRET_B64,
        "max_queue_size": str(QUEUE_MESSAGES),
        "max_event_size": str(QUEUE_MESSAGE_SIZE),
        "batch.max_wait": "0.05",
        "retry.backoff_initial": "0.05",
        "retry.backoff_max": "0.2",
        "shutdown.deadline": "5",
        "spool.path": str(tmp / "spool"),
        "spool.fsync": "never",
        "health.interval": "0.2",
        "health.log_interval": "0",
    }
    keys.update(overrides)
    return {k: v for k, v in keys.items() if v is not None}


def write_config(path: Path, queue_name: str, keys: Dict[str, str]) -> Path:
    lines = [f"[event-publisher:{queue_name}]"] + [f"{k} = {v}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def config_file(queue_name: str, hostname: str, tmp: Path, **keys: Optional[str]) -> Path:
    """``tmp/publisher.ini``: the test configuration (:func:`config_keys`) with ``keys``."""
    return write_config(
        tmp / "publisher.ini", queue_name, config_keys(queue_name, hostname, tmp, **keys)
    )


#: The last start-up line, logged once the signal handlers are in place.
READY = "to replay from an earlier run"


class PublisherProcess:
    """``python -m publisher`` in a subprocess; its stderr goes to a log file."""

    def __init__(
        self, queue_name: str, config_path: Path, log_path: Path, debug: bool = False
    ) -> None:
        self.debug = debug
        self.queue_name = queue_name
        self.config_path = config_path
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None

    def start(self, wait: bool = True) -> "PublisherProcess":
        starts = self.log().count(READY) if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "publisher", "--queue-name", self.queue_name,
             *(["--debug"] if self.debug else []), str(self.config_path)],
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        if wait:
            self.wait_for_log(READY, count=starts + 1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(text) >= count:
                return log
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not in the publisher's log:\n{self.log()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """Kill if still running, and remove the landing directory it may leave in /dev/shm."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for line in self.config_path.read_text().splitlines():
            if line.startswith("spool.path = "):
                landing = landing_path(line.split(" = ", 1)[1])
                if landing.startswith("/dev/shm/"):
                    shutil.rmtree(landing, ignore_errors=True)


def run_publisher(
    queue_name: str, config_path: Path, timeout: float = 20.0
) -> "subprocess.CompletedProcess[str]":
    """Run to completion (for start-up failures): status, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--queue-name", queue_name, str(config_path)],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_refused(
    queue_name: str, tmp: Path, **keys: Optional[str]
) -> "subprocess.CompletedProcess[str]":
    """:func:`run_publisher` on the test configuration with ``keys``, for a publisher that
    must refuse to start (its collector, 127.0.0.1:9, is never reached)."""
    return run_publisher(queue_name, config_file(queue_name, "127.0.0.1:9", tmp, **keys))


def make_event(number: int, size: int = 120) -> bytes:
    """A 2j/v1-style JSON event with a fresh uuid, padded to about ``size`` bytes."""
    event = {"uuid": str(uuid.uuid4()), "n": number, "pad": ""}
    raw = json.dumps(event, separators=(",", ":"))
    event["pad"] = "x" * max(0, size - len(raw))
    return json.dumps(event, separators=(",", ":")).encode()


def put_all(queue: MessageQueue, events: List[bytes], timeout: float = 20.0) -> None:
    """Put every event, waiting for room as the publisher drains (the queue holds 10)."""
    deadline = time.monotonic() + timeout
    for event in events:
        while True:
            try:
                queue.put(event, timeout=0.5)
                break
            except TimedOutError:
                if time.monotonic() > deadline:
                    raise
    return None


def uuids_of(events: List[bytes]) -> List[str]:
    return [json.loads(e)["uuid"] for e in events]


class Ledger:
    """Every event put, by uuid; checks what reached the collector or the dead letters."""

    def __init__(self, queue: MessageQueue) -> None:
        self.queue = queue
        self.put: List[str] = []

    def feed(self, count: int, size: int = 150) -> List[str]:
        events = [make_event(len(self.put) + i, size) for i in range(count)]
        put_all(self.queue, events)
        ids = uuids_of(events)
        self.put.extend(ids)
        return ids

    def missing(self, collector: "LocalCollector", dead_letters: Path) -> Set[str]:
        delivered = set(collector.uuids())
        refused = set()
        if dead_letters.exists():
            for line in dead_letters.read_text().splitlines():
                refused.add(json.loads(json.loads(line)["event"])["uuid"])
        return set(self.put) - delivered - refused


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
