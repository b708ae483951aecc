"""CPU per event of the collector's intake: ``python -m benchmarks.collector_decode``.

For each mix (the sample schema's events, about 540 bytes; the varied
schema's, ``benchmarks/varied.thrift``, about 750), decodes a v2 batch of 500
the way the collector does (:func:`baseplate_events.collector.decode.batches.decode_batch`):
checked only, as for the Kafka and JSONL sinks (each event parsed and checked
at once by the decoder compiled from the shape, learned or ``--schema``);
into documents (msgspec's parse, then read_struct), with and without a
schema; and, for scale, the floor (``msgspec.json.decode`` of each event)
and Thrift's own ``TJSONProtocol``. The last row is a whole POST through the
app's logic (gunzip, HMAC, Date, decode) into the JSONL sink without fsync:
the collector's CPU per event with a fast sink, HTTP server aside. Each
figure is the best of five runs of ``time.process_time``.
"""
from __future__ import annotations

import email.utils
import functools
import gzip
import tempfile
import time
from typing import Any, Callable, List

import msgspec

from thrift.protocol.TJSONProtocol import TJSONProtocol
from thrift.transport.TTransport import TMemoryBuffer

from baseplate_events.collector.service.handler import CollectorService
from baseplate_events.collector.decode.batches import EventReader, decode_batch
from baseplate_events.collector.service.intake import sign
from baseplate_events.collector.decode.schema import struct_shape
from baseplate_events.collector.service.settings import parse_settings
from baseplate_events.collector.sinks.jsonl import JSONLSink
from demo_app.event_schemas.event.ttypes import Event

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


def v2_batch(pool: List[bytes]) -> bytes:
    """The events as one uncompressed v2 batch body."""
    return b'{"1":{"lst":["rec",%d,' % len(pool) + b",".join(pool) + b"]}}"


def decode_each(pool: List[bytes]) -> None:
    """The floor: msgspec.json.decode of each event, nothing checked."""
    for event in pool:
        msgspec.json.decode(event)


def main() -> int:
    from .varied.ttypes import Checkout
    from .varied_events import varied_pool

    mixes = [("sample", event_pool(BATCH), Event), ("varied", varied_pool(BATCH), Checkout)]
    for mix, pool, cls in mixes:
        v2 = v2_batch(pool)
        generic, strict = EventReader(), EventReader(struct_shape(cls))
        decode_batch("2", v2, generic)  # the shape learned, as after a worker's first batch
        floor = functools.partial(decode_each, pool)

        def thrift(pool: List[bytes] = pool, cls: Any = cls) -> None:
            for event in pool:
                cls().read(TJSONProtocol(TMemoryBuffer(event)))

        name = cls.__name__
        rows = [
            ("floor: msgspec.json.decode of each event", floor, 40),
            ("decode, checked only (kafka, jsonl)",
             functools.partial(decode_batch, "2", v2, generic), 40),
            (f"decode, checked only, --schema {name}",
             functools.partial(decode_batch, "2", v2, strict), 40),
            ("decode into documents (no schema)",
             functools.partial(decode_batch, "2", v2, generic, documents=True), 40),
            (f"decode into documents, --schema {name}",
             functools.partial(decode_batch, "2", v2, strict, documents=True), 40),
            (f"decode, --schema {name}, with names", functools.partial(
                lambda v2, strict: [e.named for e in decode_batch("2", v2, strict)], v2, strict),
             40),
            ("Thrift TJSONProtocol read", thrift, 4),
        ]
        with tempfile.TemporaryDirectory() as directory:
            sink = JSONLSink(directory, fsync=False)
            now = time.time()
            collector = CollectorService(parse_settings({"keys": {"k": b"s"}}), generic, sink,
                                  functools.partial(float, now))
            body = gzip.compress(v2, 1)
            headers = {"X-Signature": f"key=k, mac={sign(b's', v2)}",
                       "Date": email.utils.formatdate(now, usegmt=True),
                       "Content-Encoding": "gzip", "Content-Type": "application/json"}
            rows.append(("whole POST into the jsonl sink (no fsync)",
                         functools.partial(collector.take, "/v2", headers, body), 20))
            print(f"{mix}: {BATCH} events of {len(v2) / BATCH:.0f} bytes per batch; "
                  f"CPU per event:")
            for label, run, rounds in rows:
                print(f"  {label:<45} {cpu_us_per_event(run, rounds):6.1f} µs")
            sink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
