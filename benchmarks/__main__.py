"""``python -m benchmarks`` (``make bench``): one table, ours beside the baselines.

Every ratio is measured in the same run, candidates interleaved. Options:

- ``--events N``: events per publisher run (default 200000); ``--runs N``
  runs of each publisher per event mix (default 2; the median is shown);
- ``--outage SECONDS``: length of the collector-down and collector-slow runs
  (default 15; 0 skips them);
- ``--baseplate-python PATH``: also run the real
  ``baseplate.sidecars.event_publisher`` with that interpreter (a virtualenv
  with ``baseplate==2.7.1`` installed); baseplate is not a dependency;
- ``--collector-events N``: events per collector run, per sink (default 50000);
- ``--quick``: a smoke run on tiny counts (what the test suite runs);
- ``--skip-publisher``: serializer, put and the per-POST cost only;
- ``--skip-collector``: no collector runs (they need gunicorn and the Tansu
  broker of the test extra);
- ``--tail-events N``: events in the JSONL file ``baseplate-events-tail``
  reads back (default 100000; :mod:`benchmarks.tail`).

The collector rows (:mod:`benchmarks.sinks`), for two mixes (the sample
schema's events, and the varied schema's: ``benchmarks/varied.thrift``, every
TJSON shape), each without and with ``--schema``: events/s and CPU per event
of one gunicorn worker for each sink, the same CPU as busy workers per
100,000 events/s and as a multiple of the floor (``msgspec.json.decode`` of
each event in a Python loop, measured in the same run), and the CPU per event
of each stage of a batch.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from . import micro, pipeline, post, sinks, tail

#: The two event mixes: 2000 distinct events (ids, times, strings vary), and
#: one event over and over (gzip's best case, where per-event overhead shows).
MIXES = (("varied events", 2000), ("one event repeated", 1))

Row = Tuple[str, str, str]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _publishers(baseplate_python: Optional[str]) -> Dict[str, Sequence[str]]:
    commands: Dict[str, Sequence[str]] = {
        "ours": pipeline.PUBLISHER,
        "baseplate 2.7.1 model": pipeline.BASELINE,
    }
    if baseplate_python:
        commands["baseplate 2.7.1 (real)"] = [
            baseplate_python, "-m", "baseplate.sidecars.event_publisher"
        ]
    return commands


def micro_rows(quick: bool) -> Tuple[int, List[Row]]:
    rounds, per_round = (3, 50) if quick else (25, 2000)
    m = micro.measure(rounds=rounds, per_round=per_round)
    return m.event_bytes, [
        ("serialize_v2_event (ours)", f"{m.serialize_ours:.2f} us/op",
         f"{m.serialize_ratio:.1f}x faster"),
        ("TJSONProtocol (baseplate 2.7.1)", f"{m.serialize_thrift:.2f} us/op", "1.0x"),
        ("EventQueue.put (ours)", f"{m.put_ours:.2f} us/op", f"{m.put_ratio:.1f}x faster"),
        ("Thrift serialize + mq_send (baseplate)", f"{m.put_thrift:.2f} us/op", "1.0x"),
        ("raw mq_send, pre-serialized (limit)", f"{m.put_raw:.2f} us/op",
         f"{m.put_raw / m.put_ours:.2f}x of ours"),
    ]


def post_rows(quick: bool) -> List[Row]:
    posts, rounds = (50, 3) if quick else (1000, 5)
    r = post.measure(posts=posts, rounds=rounds)
    return [(
        f"Poster.post, {post.EVENTS} events ({r.body_bytes / 1000:.0f} KB)",
        f"{r.post_us:.0f} us CPU/POST",
        f"gzip + HMAC {r.gzip_sign_us:.0f} us, HTTP {r.http_us:.0f} us",
    )]


def throughput_rows(commands: Dict[str, Sequence[str]], events: int, runs: int) -> List[Row]:
    rows: List[Row] = []
    for mix, pool in MIXES:
        results: Dict[str, List[pipeline.RunResult]] = {label: [] for label in commands}
        for _ in range(runs):
            for label, command in commands.items():  # interleaved: same drift for all
                results[label].append(pipeline.run_throughput(label, command, events, pool=pool))
        median = {label: pipeline.median_run(r) for label, r in results.items()}
        base = median["baseplate 2.7.1 model"]
        for label, r in median.items():
            rows.append((
                f"publisher, {mix}: {label}",
                f"{r.events_per_second:,.0f} ev/s, {r.cpu_us_per_event:.2f} us CPU/ev, "
                f"{r.wire_bytes_per_event:.1f} B/ev on wire, peak RSS "
                f"{r.peak_rss_kib / 1024:.0f} MiB",
                f"{r.events_per_second / base.events_per_second:.2f}x ev/s, "
                f"{r.cpu_us_per_event / base.cpu_us_per_event:.2f}x CPU, "
                f"{r.wire_bytes_per_event / base.wire_bytes_per_event:.2f}x bytes",
            ))
    return rows


def outage_rows(commands: Dict[str, Sequence[str]], seconds: float) -> List[Row]:
    rows: List[Row] = []
    for mode in ("down", "slow"):
        for label, command in commands.items():
            r = pipeline.run_outage(label, command, mode, seconds)
            spooled = f", spool {r.spool_bytes / 2**20:.0f} MiB on disk" if label == "ours" else ""
            rows.append((
                f"collector {mode} {seconds:g}s: {label}",
                f"peak RSS {r.peak_rss_kib / 1024:.0f} MiB (at start "
                f"{r.rss_start_kib / 1024:.0f} MiB){spooled}",
                "",
            ))
    return rows


def collector_rows(events: int, stage_rounds: int) -> List[Row]:
    rows: List[Row] = []
    results, floors = sinks.run_all(events, tuple(sinks.MIXES), (False, True))
    for r in results:
        schema = ", --schema" if r.schema else ""
        rows.append((
            f"collector, {r.mix} schema{schema}: {r.sink} sink",
            f"{r.events_per_second:,.0f} ev/s, {r.cpu_us_per_event:.1f} us CPU/ev per worker",
            f"{r.cpu_us_per_event / floors[r.mix]:.1f}x floor, "
            f"{r.workers_per_100k:.1f} busy workers per 100k ev/s",
        ))
    for mix, floor in floors.items():
        rows.append((f"collector, {mix} schema: floor (msgspec.json.decode per event)",
                     f"{floor:.2f} us CPU/ev", ""))
    for mix in sinks.MIXES:
        for stage, micros in sinks.stage_rows(stage_rounds, mix):
            rows.append((f"collector stage, {mix} schema: {stage}", f"{micros:.2f} us CPU/ev",
                         f"{micros / floors[mix]:.2f}x floor"))
    size = sinks.event_bytes("varied")
    rows.append(("collector, 100k ev/s of the varied mix", f"{100_000 * size / 1e6:.0f} MB/s of "
                 f"event JSON ({size:.0f} B/ev) into Kafka", ""))
    return rows


def tail_rows(events: int) -> List[Row]:
    return [(f"baseplate-events-tail, {r.label}", f"{r.events_per_second:,.0f} ev/s",
             f"{r.events_per_second / tail.TARGET:.2f}x the {tail.TARGET:,} ev/s target")
            for r in tail.measure(events)]


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--outage", type=float, default=15.0)
    parser.add_argument("--baseplate-python")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-publisher", action="store_true")
    parser.add_argument("--collector-events", type=int, default=50_000)
    parser.add_argument("--skip-collector", action="store_true")
    parser.add_argument("--tail-events", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.baseplate_python and not os.access(args.baseplate_python, os.X_OK):
        parser.error(f"--baseplate-python: {args.baseplate_python} is not an executable")
    events, runs, outage = (2000, 1, 2.0) if args.quick else (args.events, args.runs, args.outage)

    event_bytes, rows = micro_rows(args.quick)
    rows += post_rows(args.quick)
    if not args.skip_publisher:
        commands = _publishers(args.baseplate_python)
        rows += throughput_rows(commands, events, runs)
        if outage > 0:
            rows += outage_rows(commands, outage)
    if not args.skip_collector:
        collector_events, stage_rounds = (2000, 1) if args.quick else (args.collector_events, 7)
        rows += collector_rows(collector_events, stage_rounds)
    rows += tail_rows(2000 if args.quick else args.tail_events)
    print(f"machine: {os.cpu_count()} x {_cpu_model()}, Linux {platform.release()}, "
          f"Python {platform.python_version()}; event {event_bytes} bytes")
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {ratio}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
