"""Publisher benchmark: a full queue drained to a local collector, the publisher a subprocess.

One run: start the collector (``benchmarks.collector``) and create the queue
(stock size, 10 x 8192), start the publisher under test, give it a moment to
start, then start the producer (``benchmarks.producer``), which keeps the queue
full. Poll the collector until it has received the target number of events;
at that moment read the publisher's CPU time from ``/proc``. Throughput and CPU
per event are over the same window, from the producer's start to that poll.
Peak memory is the publisher's ``VmHWM`` (peak RSS, all threads).

An outage run points the publisher at a collector that is down (nothing
listens) or slow (answers every POST after a delay) for a fixed time, with the
producer still pushing, and reports the peak RSS and what the publisher put in
its disk spool (if it has one).
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from baseplate_events.mqueue.posix import MessageQueue

from .micro import QUEUE_MESSAGE_SIZE, QUEUE_MESSAGES, with_retries

PUBLISHER = [sys.executable, "-m", "publisher"]
BASELINE = [sys.executable, "-m", "benchmarks.baseline_publisher"]
STARTUP_SECONDS = 1.5
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class RunResult:
    label: str
    events: int
    seconds: float
    cpu_seconds: float
    wire_bytes: int
    body_bytes: int
    raw_bytes: int
    batches: int
    peak_rss_kib: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else float("nan")

    @property
    def wire_bytes_per_event(self) -> float:
        return self.wire_bytes / self.events if self.events else float("nan")


@dataclass
class OutageResult:
    label: str
    mode: str
    seconds: float
    peak_rss_kib: int
    rss_start_kib: int
    spool_bytes: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def memory_kib(pid: int, key: str = "VmHWM") -> int:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


class Collector:
    """The counting collector as a subprocess."""

    def __init__(self, delay: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.collector", "--delay", str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"collector did not start: {line!r}")
        self.port = int(line.split()[1])

    def stats(self) -> Dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: "subprocess.Popen[Any]", grace: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Setup:
    """A queue, a config file and a spool directory for one run; removed afterwards."""

    def __init__(self, port: int, tag: str, extra: Sequence[str] = ()) -> None:
        self.name = f"bench{os.getpid()}{tag}"
        self.dir = tempfile.mkdtemp(prefix="bpe-bench-")
        self.queue = with_retries(
            lambda: MessageQueue("/events-" + self.name, QUEUE_MESSAGES, QUEUE_MESSAGE_SIZE)
        )
        self.spool = os.path.join(self.dir, "spool")
        self.config = os.path.join(self.dir, "publisher.ini")
        secret = base64.b64encode(b"benchmark-secret").decode()
        with open(self.config, "w") as f:
            f.write(
                f"[event-publisher:{self.name}]\n"
                f"collector.hostname = 127.0.0.1:{port}\n"
                "collector.scheme = http\n"
                "collector.version = 2\n"
                "key.name = bench\n"
                f"key.secret = {secret}\n"
                f"max_queue_size = {QUEUE_MESSAGES}\n"
                f"max_event_size = {QUEUE_MESSAGE_SIZE}\n"
                f"spool.path = {self.spool}\n"
                "shutdown.deadline = 1\n"
            )
            f.writelines(line + "\n" for line in extra)

    def start(self, command: Sequence[str]) -> "subprocess.Popen[bytes]":
        log = open(os.path.join(self.dir, "publisher.log"), "wb")
        process = subprocess.Popen(
            [*command, "--queue-name", self.name, self.config],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        time.sleep(STARTUP_SECONDS)
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited at start:\n{self.log()}")
        return process

    def producer(self, pool: int = 2000) -> "subprocess.Popen[str]":
        """The producer, ready to send: call :func:`go` to start it."""
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.producer", self.queue.name, str(pool)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the producer did not start")
        return process

    def log(self) -> str:
        with open(os.path.join(self.dir, "publisher.log"), errors="replace") as f:
            return f.read()[-2000:]

    def close(self) -> None:
        self.queue.close()
        self.queue.unlink()
        shutil.rmtree(self.dir, ignore_errors=True)


def go(producer: "subprocess.Popen[str]") -> None:
    assert producer.stdin is not None
    producer.stdin.write("go\n")
    producer.stdin.flush()


def run_throughput(
    label: str, command: Sequence[str], events: int, timeout: float = 120.0, pool: int = 2000
) -> RunResult:
    """Drain ``events`` events through ``command`` to a local collector; see the module doc."""
    collector = Collector()
    setup = Setup(collector.port, "t")
    publisher: Optional[subprocess.Popen[bytes]] = None
    producer: Optional[subprocess.Popen[str]] = None
    try:
        publisher = setup.start(command)
        producer = setup.producer(pool)
        cpu_start = cpu_seconds(publisher.pid)
        start = time.monotonic()
        go(producer)
        stats = collector.stats()
        while stats["events"] < events and time.monotonic() - start < timeout:
            time.sleep(0.02)
            if publisher.poll() is not None:
                raise RuntimeError(f"{label} publisher died:\n{setup.log()}")
            stats = collector.stats()
        now = time.monotonic()
        cpu = cpu_seconds(publisher.pid) - cpu_start
        if stats["events"] < events:
            raise RuntimeError(f"{label}: {int(stats['events'])} of {events} events arrived "
                               f"in {timeout:g}s:\n{setup.log()}")
        if stats["refused"]:
            raise RuntimeError(f"{label}: the collector's intake refused {int(stats['refused'])} "
                               f"requests:\n{setup.log()}")
        return RunResult(
            label=label,
            events=int(stats["events"]),
            seconds=now - start,
            cpu_seconds=cpu,
            wire_bytes=int(stats["request_bytes"]),
            body_bytes=int(stats["body_bytes"]),
            raw_bytes=int(stats["raw_bytes"]),
            batches=int(stats["batches"]),
            peak_rss_kib=memory_kib(publisher.pid),
        )
    finally:
        for process in (producer, publisher):
            if process is not None:
                stop_process(process)
        collector.stop()
        setup.close()


#: The outage runs cap the spool, so that a long run also shows the drop-oldest
#: budget at work instead of filling the disk.
OUTAGE_SPOOL_BYTES = 256 << 20


def run_outage(label: str, command: Sequence[str], mode: str, seconds: float) -> OutageResult:
    """Keep the queue full for ``seconds`` while the collector is down or slow (2 s a POST)."""
    collector = Collector(delay=2.0) if mode == "slow" else None
    setup = Setup(collector.port if collector else free_port(), "o",
                  [f"spool.max_bytes = {OUTAGE_SPOOL_BYTES}"])
    publisher: Optional[subprocess.Popen[bytes]] = None
    producer: Optional[subprocess.Popen[str]] = None
    try:
        publisher = setup.start(command)
        rss_start = memory_kib(publisher.pid, "VmRSS")
        producer = setup.producer()
        go(producer)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if publisher.poll() is not None:
                raise RuntimeError(f"{label} publisher died:\n{setup.log()}")
        return OutageResult(
            label=label,
            mode=mode,
            seconds=seconds,
            peak_rss_kib=memory_kib(publisher.pid),
            rss_start_kib=rss_start,
            spool_bytes=dir_bytes(setup.spool),
        )
    finally:
        for process in (producer, publisher):
            if process is not None:
                stop_process(process)
        if collector is not None:
            collector.stop()
        setup.close()


def median_run(runs: List[RunResult]) -> RunResult:
    """The run with the median throughput."""
    ordered = sorted(runs, key=lambda r: r.events_per_second)
    return ordered[len(ordered) // 2]
