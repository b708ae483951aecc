"""How fast ``baseplate-events-tail`` reads a JSONL file back: ``python -m benchmarks.tail``.

Stores ``events`` varied sample events (about 540 bytes each, every one its
own uuid) with the JSONL sink itself into one file, then runs the tail's own
``main`` over it, ``--from-beginning``, printing to ``/dev/null``: without a
schema (fields by id) and with ``--schema`` (fields by name). Each figure is
the best of ``runs`` wall-clock runs, in events per second; the target is
50,000 without a schema.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import List, Sequence

from baseplate_events.collector.sinks import StoredEvent
from baseplate_events.collector.sinks.jsonl import JSONLSink
from baseplate_events.collector.tail.__main__ import main as tail_main

from .sample import event_pool

#: what the reader must sustain without --schema
TARGET = 50_000
SCHEMA = "demo_app.event_schemas.event.ttypes:Event"


@dataclass(frozen=True)
class TailResult:
    label: str
    events_per_second: float


def fill(directory: str, events: int) -> None:
    """``events`` distinct v2 events, stored by the JSONL sink in batches of 500."""
    pool = event_pool(min(events, 2000))
    sink = JSONLSink(directory, max_bytes=1 << 40, fsync=False)
    batch: List[StoredEvent] = []
    for number in range(events):
        document = json.loads(pool[number % len(pool)])
        event_uuid = str(uuid.uuid4())
        document["5"] = {"str": event_uuid}
        raw = json.dumps(document, separators=(",", ":")).encode()
        batch.append(StoredEvent(event_uuid, "2", raw, received_ms=int(time.time() * 1000)))
        if len(batch) == 500:
            sink.store("v2", batch)
            batch = []
    if batch:
        sink.store("v2", batch)
    sink.close()


def measure(events: int, runs: int = 3) -> List[TailResult]:
    results = []
    with tempfile.TemporaryDirectory() as directory, open("/dev/null", "wb") as out:
        fill(directory, events)
        base = ["--sink", "jsonl", "--option", f"jsonl.directory={directory}",
                "--from-beginning"]
        for label, extra in (("jsonl file, fields by id", []),
                             ("jsonl file, --schema (fields by name)", ["--schema", SCHEMA])):
            best = float("inf")
            for _ in range(runs):
                started = time.perf_counter()
                status = tail_main([*base, *extra], out)
                best = min(best, time.perf_counter() - started)
                if status != 0:
                    raise RuntimeError(f"baseplate-events-tail exited {status}")
            results.append(TailResult(label, events / best))
    return results


def main(argv: Sequence[str]) -> int:
    events = int(argv[0]) if argv else 100_000
    for result in measure(events):
        print(f"baseplate-events-tail, {result.label}: {result.events_per_second:,.0f} ev/s "
              f"({result.events_per_second / TARGET:.2f}x the {TARGET:,} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
