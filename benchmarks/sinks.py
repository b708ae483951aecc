"""Collector benchmark: events/s and CPU per event of one collector worker, for each sink.

Two mixes of events (:data:`MIXES`): the sample schema's events (``sample``,
~540 bytes, every event distinct) and the varied schema's
(``varied``: ``benchmarks/varied.thrift``, every TJSON shape, ~750 bytes).
One run per sink (``sqlite``, ``jsonl``, ``kafka``), without and with
``--schema``: the collector's WSGI app under gunicorn with one sync worker
(each worker of a real deployment is one such process), fed signed, gzipped
v2 batches (``BATCH_EVENTS`` events) by two client threads, so that the
worker always has the next batch waiting. The bodies are built before the
clock starts. Events/s and CPU per event are over the same window, the
worker's CPU (all its threads, librdkafka's included) read from ``/proc``.
The Kafka run writes to a local Tansu broker (in memory, a separate process
whose CPU is not counted: the broker is not the collector's cost). Beside
them, the floor: ``msgspec.json.decode`` of each event in a Python loop.

Then, in this process, the stages of a batch timed apart (CPU time per
event), for each mix: gunzip, HMAC check, split, parse (the floor), the
compiled check (parse, walk and uuid at once: what the Kafka and JSONL sinks
use), the walk into documents (read_struct, for SQLite), the uuid, the whole
decode both ways, and each sink's ``store``; that says where a worker's time
goes.
"""
from __future__ import annotations

import functools
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from publisher.send.batches import build_body
from publisher.send.post import gzip_compress, sign

import msgspec

from .pipeline import cpu_seconds, stop_process
from .sample import event_pool
from .timing import client_threads
from .varied_events import SCHEMA as VARIED_SCHEMA
from .varied_events import varied_pool

SINKS = ("sqlite", "jsonl", "kafka")
#: mix → (events of seed, their --schema)
MIXES: Dict[str, Tuple[Callable[[int, int], List[bytes]], str]] = {
    "sample": (lambda count, seed: event_pool(count, seed=seed),
               "demo_app.event_schemas.event.ttypes:Event"),
    "varied": (varied_pool, VARIED_SCHEMA),
}
#: ~500-byte events in a 500 KiB batch (the publisher's default cap)
BATCH_EVENTS = 1000
KEY_NAME = "bench"
SECRET = b"benchmark-secret"


@dataclass
class SinkResult:
    sink: str
    mix: str
    schema: bool
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


def batches(events: int, seed: int, mix: str = "sample") -> List[List[bytes]]:
    """``events`` distinct events of ``mix``, in batches of BATCH_EVENTS."""
    pool = MIXES[mix][0](events, seed)
    return [pool[i:i + BATCH_EVENTS] for i in range(0, len(pool), BATCH_EVENTS)]


def floor_us(events: Sequence[bytes]) -> float:
    """``msgspec.json.decode`` of each event in a Python loop: best of 5, process time."""
    decode = msgspec.json.decode
    best = []
    for _ in range(5):
        started = time.process_time()
        for event in events:
            decode(event)
        best.append((time.process_time() - started) / len(events) * 1e6)
    return min(best)


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
             bootstrap: Optional[str], clients: int = 2, mix: str = "sample",
             schema: bool = False) -> SinkResult:
    """POST every body to a one-worker collector with ``sink``; see the module docstring."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bpe-bench-{sink}-"))
    if sink == "jsonl":
        (workdir / "jsonl").mkdir(mode=0o700)
    options = sink_options(sink, workdir, bootstrap)
    if schema:
        options["schema"] = MIXES[mix][1]
    worker = Worker(sink, workdir, options)
    try:
        for body, signature in bodies[:warmup]:  # imports, the producer's start, the file
            status = worker.post(body, signature)
            if status != 200:
                raise RuntimeError(f"{sink}: warm-up batch answered {status}:\n"
                                   f"{worker.log_path.read_text()[-2000:]}")
        timed = bodies[warmup:]
        threads, statuses = client_threads(worker.post, timed, clients)
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
        return SinkResult(sink, mix, schema, len(timed) * per_batch, seconds, cpu)
    finally:
        worker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_all(events: int, mixes: Sequence[str] = ("sample",), schemas: Sequence[bool] = (False,)
            ) -> Tuple[List[SinkResult], Dict[str, float]]:
    """One run per mix, schema and sink on fresh events (SQLite would count repeated uuids
    as duplicates); and each mix's floor, measured on the events of its runs."""
    from demo_app.tansu import TansuBroker

    warmup = 2
    results = []
    floors: Dict[str, List[float]] = {mix: [] for mix in mixes}
    seed = 100
    with tempfile.TemporaryDirectory(prefix="bpe-bench-tansu-") as logdir:
        with TansuBroker.start(Path(logdir)) as broker:
            for mix in mixes:
                for schema in schemas:
                    for sink in SINKS:
                        seed += 1
                        groups = batches(events + warmup * BATCH_EVENTS, seed, mix)
                        floors[mix].append(floor_us(groups[-1]))
                        bodies = [request_body(group) for group in groups
                                  if len(group) == BATCH_EVENTS]
                        results.append(run_sink(sink, bodies, BATCH_EVENTS, warmup,
                                                broker.bootstrap, mix=mix, schema=schema))
    return results, {mix: statistics.median(values) for mix, values in floors.items()}


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


def stage_rows(rounds: int, mix: str = "sample") -> List[Tuple[str, float]]:
    """(stage, CPU µs per event) over ``rounds`` distinct batches of ``mix``.

    Distinct batches, as a worker sees them: the same batch over and over
    decodes faster (warm caches) and would only be duplicates to SQLite. The
    reader without a schema has learned the mix's shape from one batch first,
    as a worker has after its first batches.
    """
    from baseplate_events.collector.decode.batches import _SPLIT_V2, EventReader, decode_batch
    from baseplate_events.collector.decode.documents import read_struct
    from baseplate_events.collector.service.intake import check_mac, gunzip_bounded
    from baseplate_events.collector.decode.schema import load_schema
    from baseplate_events.collector.sinks import create_sink
    from demo_app.tansu import TansuBroker

    groups = batches(BATCH_EVENTS * (rounds + 1), 99, mix)
    plains = [build_body("2", group) for group in groups]
    bodies = [gzip_compress(plain, 6) for plain in plains]
    macs = [sign(KEY_NAME, SECRET, plain).rsplit("mac=", 1)[1] for plain in plains]
    reader = EventReader()
    decode_batch("2", plains[0], reader)  # learns the shape
    strict = EventReader(load_schema(MIXES[mix][1]))
    received_ms = int(time.time() * 1000)
    keys = {KEY_NAME: SECRET}
    parse = msgspec.json.Decoder().decode
    parsed = [[parse(event) for event in group] for group in groups]
    walked = [[read_struct(event) for event in group] for group in parsed]

    def each(operation: Callable[[Any], Any]) -> Callable[[Sequence[Any]], None]:
        def run(items: Sequence[Any]) -> None:
            for item in items:
                operation(item)
        return run

    rows = [
        ("gunzip", _cpu_per_event(lambda body: gunzip_bounded(body, 8 << 20), bodies[1:],
                                  BATCH_EVENTS)),
        ("HMAC-SHA256 check", _cpu_per_event(
            lambda i: check_mac(keys, KEY_NAME, macs[i], plains[i]), range(1, len(plains)),
            BATCH_EVENTS)),
        ("split (msgspec, each event's bytes)", _cpu_per_event(_SPLIT_V2, plains[1:],
                                                               BATCH_EVENTS)),
        ("parse (msgspec.json.decode: the floor)", _cpu_per_event(each(parse), groups[1:],
                                                                  BATCH_EVENTS)),
        ("parse + walk + uuid, compiled (kafka, jsonl)", _cpu_per_event(
            each(reader._typed.check), groups[1:], BATCH_EVENTS)),
        ("parse + walk + uuid, compiled, --schema", _cpu_per_event(
            each(strict._typed.check), groups[1:], BATCH_EVENTS)),
        ("walk into documents (read_struct, sqlite)", _cpu_per_event(
            each(read_struct), parsed[1:], BATCH_EVENTS)),
        ("uuid of a document", _cpu_per_event(each(reader.uuid_of), walked[1:],
                                              BATCH_EVENTS)),
        ("decode, checked only (kafka, jsonl)", _cpu_per_event(
            lambda plain: decode_batch("2", plain, reader, received_ms), plains[1:],
            BATCH_EVENTS)),
        ("decode, checked only, --schema", _cpu_per_event(
            lambda plain: decode_batch("2", plain, strict, received_ms), plains[1:],
            BATCH_EVENTS)),
        ("decode into documents (sqlite)", _cpu_per_event(
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


def event_bytes(mix: str = "sample") -> float:
    group = batches(BATCH_EVENTS, 99, mix)[0]
    return sum(map(len, group)) / len(group)


if __name__ == "__main__":  # python -m benchmarks.sinks [EVENTS]: this part alone
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    results, floors = run_all(count, ("sample", "varied"), (False, True))
    for result in results:
        print(f"{result.mix}{' --schema' if result.schema else ''}: {result.sink}: "
              f"{result.events_per_second:,.0f} ev/s, {result.cpu_us_per_event:.1f} us CPU/ev, "
              f"{result.cpu_us_per_event / floors[result.mix]:.1f}x the floor")
    for mix, floor in floors.items():
        print(f"{mix}: floor {floor:.2f} us/ev")
        for stage, micros in stage_rows(5, mix):
            print(f"{mix}: {stage}: {micros:.2f} us/ev")
    print(f"pid {os.getpid()}")
