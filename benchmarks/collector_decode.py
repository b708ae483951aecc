"""CPU per event of the collector's intake: ``python -m benchmarks.collector_decode``.

Decodes a v2 batch of 500 varied sample events (about 540 bytes each) the way
the collector does (:func:`baseplate_events.collector.batches.decode_batch`:
the library JSON scanner, then the TJSON type tags read generically), with and
without a schema, and, for scale, with Thrift's own ``TJSONProtocol``. The
last row is a whole POST through the app's logic (gunzip, HMAC, Date, decode)
into the JSONL sink without fsync: the collector's CPU per event with a fast
sink, HTTP server aside. Each figure is the best of five runs of
``time.process_time``.
"""
from __future__ import annotations

import email.utils
import gzip
import tempfile
import time
from typing import Callable

from thrift.protocol.TJSONProtocol import TJSONProtocol
from thrift.transport.TTransport import TMemoryBuffer

from baseplate_events.collector.service import Collector
from baseplate_events.collector.batches import EventReader, decode_batch
from baseplate_events.collector.intake import sign
from baseplate_events.collector.schema import struct_shape
from baseplate_events.collector.settings import parse_settings
from baseplate_events.collector.sinks.jsonl import JSONLSink
from demo_app.event_schemas.event.ttypes import Event, EventBatch

from .sample import event_pool

BATCH = 500


def cpu_us_per_event(run: Callable[[], object], rounds: int) -> float:
    run()
    best = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(rounds):
            run()
        best.append((time.process_time() - started) / rounds / BATCH * 1e6)
    return min(best)


def main() -> int:
    pool = event_pool(BATCH)
    v2 = b'{"1":{"lst":["rec",%d,' % len(pool) + b",".join(pool) + b"]}}"
    generic, strict = EventReader(), EventReader(struct_shape(Event))

    def thrift() -> None:
        EventBatch().read(TJSONProtocol(TMemoryBuffer(v2)))

    rows = [
        ("decode, any struct (no schema)", lambda: decode_batch("2", v2, generic), 40),
        ("decode, --schema Event", lambda: decode_batch("2", v2, strict), 40),
        ("decode, --schema Event, with names",
         lambda: [e.named for e in decode_batch("2", v2, strict)], 40),
        ("Thrift TJSONProtocol read", thrift, 4),
    ]
    with tempfile.TemporaryDirectory() as directory:
        sink = JSONLSink(directory, fsync=False)
        now = time.time()
        collector = Collector(parse_settings({"keys": {"k": b"s"}}), generic, sink, lambda: now)
        body = gzip.compress(v2, 1)
        headers = {"X-Signature": f"key=k, mac={sign(b's', v2)}",
                   "Date": email.utils.formatdate(now, usegmt=True),
                   "Content-Encoding": "gzip", "Content-Type": "application/json"}
        rows.append(("whole POST into the jsonl sink (no fsync)",
                     lambda: collector.take("/v2", headers, body), 20))
        print(f"{BATCH} events of {len(v2) / BATCH:.0f} bytes per batch; CPU per event:")
        for name, run, rounds in rows:
            print(f"  {name:<45} {cpu_us_per_event(run, rounds):6.1f} µs")
        sink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
