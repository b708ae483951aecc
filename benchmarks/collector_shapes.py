"""The compiled check on shapes the varied mix lacks: ``python -m benchmarks.collector_shapes``.

The schema is ``benchmarks/shapes.thrift``: a ``Listing`` holding a recursive
``Category`` tree (three levels, up to three children each) and containers
of containers (a list of lists, a map of lists, a list of maps). Two mixes of
its events, about 500 bytes each:

- ``mostly empty``: one event in ten has anything in its containers of
  containers, the rest send them empty (``["lst", 0]``);
- ``always empty``: no event ever does.

For each, a v2 batch of 500 decoded as for the Kafka and JSONL sinks
(:func:`~baseplate_events.collector.decode.batches.decode_batch`), with the
shape learned from the events and with ``--schema benchmarks.shapes.ttypes:Listing``,
beside the floor (``msgspec.json.decode`` of each event). Before the compiled
reader typed a container only seen empty, and unrolled a recursive struct,
such a shape sent every event to the general reader. Each figure is the best
of five runs of ``time.process_time``.
"""
from __future__ import annotations

import functools
import random
import uuid
from typing import List


from baseplate_events import serialize_v2_event
from baseplate_events.collector.decode.batches import EventReader, decode_batch
from baseplate_events.collector.decode.schema import struct_shape

from .collector_decode import BATCH, cpu_us_per_event, decode_each, v2_batch
from .shapes.ttypes import Category, Listing


def _category(rng: random.Random, levels: int) -> Category:
    children = [_category(rng, levels - 1) for _ in range(rng.randrange(4))] if levels else []
    return Category(name=f"c{rng.randrange(10_000)}", items=rng.randrange(1000),
                    children=children)


def listing(rng: random.Random, full: bool) -> bytes:
    """One event's TJSON; ``full``: its containers of containers hold something."""
    event = Listing(
        uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        timestamp_ms=1_733_000_000_000 + rng.randrange(10**9),
        root=_category(rng, 2),
        tag_groups=[["sale", "new"], ["blue"]] if full else [],
        ranks={"week": [rng.randrange(100) for _ in range(3)]} if full else {},
        notes=[{"by": "ops", "text": "restocked"}] if full else [],
        thumbnail=bytes(rng.randrange(256) for _ in range(24)),
    )
    return serialize_v2_event(event)


def pool(share_full: float, seed: int = 11) -> List[bytes]:
    rng = random.Random(seed)
    return [listing(rng, rng.random() < share_full) for _ in range(BATCH)]


def main() -> int:
    for mix, share in (("mostly empty", 0.1), ("always empty", 0.0)):
        events = pool(share)
        v2 = v2_batch(events)
        learned, strict = EventReader(), EventReader(struct_shape(Listing))
        decode_batch("2", v2, learned)  # the shape learned, as after a worker's first batch
        rows = [("floor: msgspec.json.decode of each event",
                 functools.partial(decode_each, events)),
                ("decode, checked only, shape learned", functools.partial(
                    decode_batch, "2", v2, learned)),
                ("decode, checked only, --schema Listing", functools.partial(
                    decode_batch, "2", v2, strict))]
        print(f"{mix}: {BATCH} events of {len(v2) / BATCH:.0f} bytes per batch; CPU per event:")
        base = 0.0
        for label, run in rows:
            cpu = cpu_us_per_event(run, 20)
            base = base or cpu
            print(f"  {label:<45} {cpu:6.1f} µs  {cpu / base:5.2f}x floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
