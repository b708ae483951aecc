"""Kafka test helpers: events for the sink, a real fatal error in a real producer, and the
collector under gunicorn.

librdkafka ships ``rd_kafka_test_fatal_error()`` for exactly this: it puts a
live producer into the fatal state that a broker would (here, a fenced
epoch), so the sink's recovery runs the code path a real fatal error takes.
confluent-kafka does not bind it, so it is called through ctypes on the
``rd_kafka_t`` handle, the first field after the Python object header of a
``Producer`` (confluent_kafka/src/confluent_kafka.h: ``Handle``).
"""
from __future__ import annotations

import ctypes
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

import confluent_kafka

from baseplate_events.collector.sinks import StoredEvent

ROOT = Path(__file__).resolve().parent.parent.parent

#: librdkafka's RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, a fatal error for an idempotent producer
INVALID_PRODUCER_EPOCH = 47


def stored_event(version: str = "2j", size: int = 0, **fields: Any) -> StoredEvent:
    """An accepted event with a fresh uuid, padded to about ``size`` bytes of JSON."""
    event_uuid = str(uuid.uuid4())
    document = {"uuid": event_uuid, "action": "test", "pad": "", **fields}
    raw = json.dumps(document, separators=(",", ":"))
    document["pad"] = "x" * max(0, size - len(raw))
    raw_bytes = json.dumps(document, separators=(",", ":")).encode()
    return StoredEvent(uuid=event_uuid, version=version, raw=raw_bytes, document=document,
                       received_ms=int(time.time() * 1000))


def raise_fatal_error(producer: confluent_kafka.Producer, reason: str) -> None:
    """Put ``producer`` into librdkafka's fatal state, as a fenced epoch from a broker would."""
    libs = os.path.join(os.path.dirname(confluent_kafka.__file__), os.pardir,
                        "confluent_kafka.libs", "librdkafka*")
    paths = glob.glob(libs)
    library = ctypes.CDLL(paths[0]) if paths else ctypes.CDLL("librdkafka.so.1")
    library.rd_kafka_test_fatal_error.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    handle = ctypes.c_void_p.from_address(id(producer) + object.__basicsize__).value
    status = library.rd_kafka_test_fatal_error(handle, INVALID_PRODUCER_EPOCH, reason.encode())
    assert 0 == status, f"rd_kafka_test_fatal_error returned {status}"


class GunicornCollector:
    """The collector under gunicorn (``-w N``, sync workers) on a free loopback port.

    Each worker loads the app itself (no ``--preload``), so each has its own
    Kafka producer: librdkafka's threads do not survive a fork.
    """

    def __init__(self, settings: Dict[str, str], log_path: Path, workers: int = 2,
                 extra_args: Sequence[str] = ()) -> None:
        self.log_path = log_path
        self.workers = workers
        factory = f"baseplate_events.collector:make_app({json.dumps(settings)})"
        log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", "127.0.0.1:0",
             "--graceful-timeout", "10", "--log-level", "info", *extra_args, factory],
            cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        listening = self.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)")
        self.port = int(listening[0])
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait_for(r"Booting worker with pid: (\d+)", count=workers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30.0) -> List[str]:
        """The first group of each match, once the log has ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.log())
            if len(found) >= count:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} x {count} not in gunicorn's log:\n{self.log()}")
            time.sleep(0.05)

    def worker_pids(self) -> List[int]:
        """The workers alive now (gunicorn logs each one it boots)."""
        pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", self.log())]
        return [pid for pid in pids if os.path.exists(f"/proc/{pid}") and _is_child(pid,
                                                                               self.process.pid)]

    def serving_workers(self) -> List[int]:
        """Workers holding an accepted connection now: in the middle of a request."""
        connected = _established_inodes(self.port)
        return [pid for pid in self.worker_pids() if _socket_inodes(pid) & connected]

    def stop(self, timeout: float = 30) -> Optional[int]:
        """SIGTERM; the exit status, or None if it outlived ``timeout`` (then SIGKILLed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode


def _is_child(pid: int, parent: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1]) == parent
    except (OSError, ValueError, IndexError):
        return False


def _socket_inodes(pid: int) -> Set[int]:
    inodes: Set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _established_inodes(port: int) -> Set[int]:
    """Inodes of ESTABLISHED TCP sockets whose local port is ``port`` (/proc/net/tcp)."""
    inodes: Set[int] = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes
