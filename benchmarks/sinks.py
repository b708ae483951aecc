"""Collector benchmark: events/s and CPU per event of one collector worker, for each sink.

One run per sink (``sqlite``, ``jsonl``, ``kafka``): the collector's WSGI app
under gunicorn with one sync worker (each worker of a real deployment is one
such process), fed signed, gzipped v2 batches of the varied mix (every event
distinct, uuids included, ~500 bytes; batches of ``BATCH_EVENTS`` events, as
the publisher's 500 KiB cap makes them) by two client threads, so that the
worker always has the next batch waiting. The bodies are built before the
clock starts. Events/s and CPU per event are over the same window, the
worker's CPU (all its threads, librdkafka's included) read from ``/proc``.
The Kafka run writes to a local Tansu broker (in memory, a separate process
whose CPU is not counted: the broker is not the collector's cost).

Then, in this process, the stages of one batch timed apart (CPU time per
event): gunzip, HMAC check, decoding (checked only, for the sinks that keep
bytes and uuid; into documents, for SQLite), and each sink's ``store``;
that says where a worker's time goes.
"""
from __future__ import annotations

import functools
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from publisher.batching import build_body
from publisher.post import gzip_compress, sign

from .pipeline import cpu_seconds, stop_process
from .sample import event_pool

SINKS = ("sqlite", "jsonl", "kafka")
#: ~500-byte events in a 500 KiB batch (the publisher's default cap)
BATCH_EVENTS = 1000
KEY_NAME = "bench"
SECRET = b"benchmark-secret"


@dataclass
class SinkResult:
    sink: str
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6

    @property
    def workers_per_100k(self) -> float:
        """Busy cores (workers) that 100,000 events/s take at this CPU cost."""
        return 100_000 * self.cpu_us_per_event / 1e6


def batches(events: int, seed: int) -> List[List[bytes]]:
    """``events`` distinct events of the varied mix, in batches of BATCH_EVENTS."""
    pool = event_pool(events, seed=seed)
    return [pool[i:i + BATCH_EVENTS] for i in range(0, len(pool), BATCH_EVENTS)]


def request_body(events: Sequence[bytes]) -> Tuple[bytes, str]:
    """The gzipped v2 body and its X-Signature header, as the publisher sends them."""
    plain = build_body("2", events)
    return gzip_compress(plain, 6), sign(KEY_NAME, SECRET, plain)


class Worker:
    """``gunicorn -w 1`` serving the collector with one sink; ``pid`` is the worker's."""

    def __init__(self, sink: str, workdir: Path, options: Dict[str, str]) -> None:
        keys = workdir / "keys.ini"
        keys.write_text(f"[event-publisher:bench]\nkey.name = {KEY_NAME}\n"
                        f"key.secret = {__import__('base64').b64encode(SECRET).decode()}\n")
        settings = {"publisher_config": str(keys), "sink": sink, **options}
        self.log_path = workdir / f"gunicorn-{sink}.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:0",
             "--backlog", "16", f"baseplate_events.collector:make_app({json.dumps(settings)})"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.port = int(self._wait(r"Listening at: http://127\.0\.0\.1:(\d+)"))
        self.pid = int(self._wait(r"Booting worker with pid: (\d+)"))

    def _wait(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log_path.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not start:\n{self.log_path.read_text()[-2000:]}")

    def post(self, body: bytes, signature: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", "/v2", body, {
                "Content-Type": "application/json", "Content-Encoding": "gzip",
                "Date": formatdate(usegmt=True), "X-Signature": signature})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stop(self) -> None:
        stop_process(self.process, grace=15)


def sink_options(sink: str, workdir: Path, bootstrap: Optional[str]) -> Dict[str, str]:
    if sink == "sqlite":
        return {"sqlite.path": str(workdir / "events.sqlite3")}
    if sink == "jsonl":
        return {"jsonl.directory": str(workdir / "jsonl")}
    assert bootstrap is not None
    return {"kafka.bootstrap_servers": bootstrap}


def run_sink(sink: str, bodies: List[Tuple[bytes, str]], per_batch: int, warmup: int,
             bootstrap: Optional[str], clients: int = 2) -> SinkResult:
    """POST every body to a one-worker collector with ``sink``; see the module docstring."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bpe-bench-{sink}-"))
    if sink == "jsonl":
        (workdir / "jsonl").mkdir(mode=0o700)
    worker = Worker(sink, workdir, sink_options(sink, workdir, bootstrap))
    try:
        for body, signature in bodies[:warmup]:  # imports, the producer's start, the file
            status = worker.post(body, signature)
            if status != 200:
                raise RuntimeError(f"{sink}: warm-up batch answered {status}:\n"
                                   f"{worker.log_path.read_text()[-2000:]}")
        timed = bodies[warmup:]
        statuses: List[int] = []
        lock = threading.Lock()
        position = iter(range(len(timed)))

        def client() -> None:
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                answer = worker.post(*timed[index])
                with lock:
                    statuses.append(answer)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        cpu_start = cpu_seconds(worker.pid)
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - start
        cpu = cpu_seconds(worker.pid) - cpu_start
        if set(statuses) != {200}:
            raise RuntimeError(f"{sink}: answers {sorted(set(statuses))}:\n"
                               f"{worker.log_path.read_text()[-2000:]}")
        return SinkResult(sink, len(timed) * per_batch, seconds, cpu)
    finally:
        worker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_all(events: int) -> List[SinkResult]:
    """One run per sink on fresh events (SQLite would count repeated uuids as duplicates)."""
    from demo_app.tansu import TansuBroker

    warmup = 2
    results = []
    with tempfile.TemporaryDirectory(prefix="bpe-bench-tansu-") as logdir:
        with TansuBroker.start(Path(logdir)) as broker:
            for number, sink in enumerate(SINKS):
                groups = batches(events + warmup * BATCH_EVENTS, seed=100 + number)
                bodies = [request_body(group) for group in groups if len(group) == BATCH_EVENTS]
                results.append(run_sink(sink, bodies, BATCH_EVENTS, warmup, broker.bootstrap))
    return results


# -- the stages, in process ---------------------------------------------------


def _cpu_per_event(operation: Callable[[Any], Any], inputs: Sequence[Any], events: int) -> float:
    """Median CPU microseconds per event of ``operation`` over ``inputs`` (one batch each)."""
    samples = []
    for argument in inputs:
        start = time.process_time()
        operation(argument)
        samples.append((time.process_time() - start) / events * 1e6)
    samples.sort()
    return samples[len(samples) // 2]


def stage_rows(rounds: int) -> List[Tuple[str, float]]:
    """(stage, CPU µs per event) over ``rounds`` distinct batches of the varied mix.

    Distinct batches, as a worker sees them: the same batch over and over
    decodes faster (warm caches) and would only be duplicates to SQLite.
    """
    from baseplate_events.collector.batches import EventReader, decode_batch
    from baseplate_events.collector.intake import check_mac, gunzip_bounded
    from baseplate_events.collector.sinks import create_sink
    from demo_app.tansu import TansuBroker

    groups = batches(BATCH_EVENTS * (rounds + 1), seed=99)
    plains = [build_body("2", group) for group in groups]
    bodies = [gzip_compress(plain, 6) for plain in plains]
    macs = [sign(KEY_NAME, SECRET, plain).rsplit("mac=", 1)[1] for plain in plains]
    reader = EventReader()
    received_ms = int(time.time() * 1000)
    keys = {KEY_NAME: SECRET}
    rows = [
        ("gunzip", _cpu_per_event(lambda body: gunzip_bounded(body, 8 << 20), bodies[1:],
                                  BATCH_EVENTS)),
        ("HMAC-SHA256 check", _cpu_per_event(
            lambda i: check_mac(keys, KEY_NAME, macs[i], plains[i]), range(1, len(plains)),
            BATCH_EVENTS)),
        ("decode, checked only (kafka, jsonl)", _cpu_per_event(
            lambda plain: decode_batch("2", plain, reader, received_ms), plains[1:],
            BATCH_EVENTS)),
        ("decode into documents", _cpu_per_event(
            lambda plain: decode_batch("2", plain, reader, received_ms, documents=True),
            plains[1:], BATCH_EVENTS)),
    ]
    decoded = [decode_batch("2", plain, reader, received_ms, documents=True) for plain in plains]
    workdir = Path(tempfile.mkdtemp(prefix="bpe-bench-stages-"))
    try:
        (workdir / "jsonl").mkdir(mode=0o700)
        with TansuBroker.start(workdir) as broker:
            for sink_name in SINKS:
                options = {k.split(".", 1)[1]: v for k, v in
                           sink_options(sink_name, workdir, broker.bootstrap).items()}
                sink = create_sink(sink_name, options)
                try:
                    sink.store("v2", decoded[0])  # warm: tables, file, producer id
                    rows.append((f"store: {sink_name}", _cpu_per_event(
                        functools.partial(sink.store, "v2"), decoded[1:], BATCH_EVENTS)))
                finally:
                    sink.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def event_bytes() -> float:
    group = batches(BATCH_EVENTS, seed=99)[0]
    return sum(map(len, group)) / len(group)


if __name__ == "__main__":  # python -m benchmarks.sinks [EVENTS]: this part alone
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    for result in run_all(count):
        print(f"{result.sink}: {result.events_per_second:,.0f} ev/s, "
              f"{result.cpu_us_per_event:.1f} us CPU/ev")
    for stage, micros in stage_rows(5):
        print(f"{stage}: {micros:.2f} us/ev")
    print(f"pid {os.getpid()}")
