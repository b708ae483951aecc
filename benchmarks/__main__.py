"""``python -m benchmarks`` (``make bench``): one table, ours beside the baselines.

Options: ``--events N`` for the publisher runs (default 200000), ``--quick``
for a smoke run on tiny counts, ``--skip-publisher``.
"""
from __future__ import annotations

import argparse
import platform
import sys
from typing import List

from . import micro, pipeline


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-publisher", action="store_true")
    args = parser.parse_args(argv)
    rounds, per_round = (3, 50) if args.quick else (25, 2000)
    events = 2000 if args.quick else args.events

    m = micro.measure(rounds=rounds, per_round=per_round)
    rows = [
        ("serialize_v2_event (ours)", f"{m.serialize_ours:.2f} us/op", f"{m.serialize_ratio:.1f}x"),
        ("TJSONProtocol (baseplate 2.7.1)", f"{m.serialize_thrift:.2f} us/op", "1.0x"),
        ("EventQueue.put (ours)", f"{m.put_ours:.2f} us/op", f"{m.put_ratio:.1f}x"),
        ("Thrift serialize + mq_send", f"{m.put_thrift:.2f} us/op", "1.0x"),
        ("raw mq_send, pre-serialized", f"{m.put_raw:.2f} us/op", "limit"),
    ]
    if not args.skip_publisher:
        ours, base = [], []
        for _ in range(1 if args.quick else args.runs):
            ours.append(pipeline.run_throughput("ours", pipeline.PUBLISHER, events))
            base.append(pipeline.run_throughput("baseline", pipeline.BASELINE, events))
        o, b = pipeline.median_run(ours), pipeline.median_run(base)
        for label, r in (("publisher (ours)", o), ("publisher model of baseplate 2.7.1", b)):
            rows.append(
                (
                    label,
                    f"{r.events_per_second:,.0f} ev/s, {r.cpu_us_per_event:.1f} us CPU/ev, "
                    f"{r.wire_bytes_per_event:.1f} B/ev on wire, "
                    f"peak RSS {r.peak_rss_kib // 1024} MiB",
                    f"{r.events_per_second / b.events_per_second:.2f}x ev/s, "
                    f"{r.cpu_us_per_event / b.cpu_us_per_event:.2f}x CPU",
                )
            )
    print(f"event: {m.event_bytes} bytes; Python {platform.python_version()}")
    width = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:<70}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
