"""`make bench` keeps working: a smoke run of ``python -m benchmarks --quick``.

Nothing here is timed or compared: the figures of a quick run on a busy CI
machine mean nothing. It checks that every row is there, that the publisher
runs delivered what they were asked to, and that nothing is left behind.
"""
from __future__ import annotations

import pytest
import os
import re
import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent.parent


def _bench_queues() -> set:
    try:
        return {n for n in os.listdir("/dev/mqueue") if n.startswith("events-bench")}
    except OSError:
        return set()  # /dev/mqueue not mounted: nothing to check


def test_quick_bench_prints_every_row_and_cleans_up():
    before = _bench_queues()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("machine: ")
    for name in (
        "serialize_v2_event (ours)",
        "TJSONProtocol (baseplate 2.7.1)",
        "EventQueue.put (ours)",
        "Thrift serialize + mq_send (baseplate)",
        "raw mq_send, pre-serialized (limit)",
    ):
        assert re.search(re.escape(name) + r"\s+\d+\.\d\d us/op", out), name
    assert re.search(r"Poster\.post, 100 events \(\d+ KB\)\s+\d+ us CPU/POST\s+gzip \+ HMAC", out)
    for mix in ("varied events", "one event repeated"):
        for who in ("ours", "baseplate 2.7.1 model"):
            line = re.search(rf"publisher, {mix}: {re.escape(who)}\s+([\d,]+) ev/s, "
                             r"([\d.]+) us CPU/ev, ([\d.]+) B/ev on wire", out)
            assert line, (mix, who, out)
            assert float(line.group(3)) > 0
    for mode in ("down", "slow"):
        assert re.search(rf"collector {mode} \S+: ours\s+peak RSS \d+ MiB .*spool \d+ MiB", out)
        assert re.search(rf"collector {mode} \S+: baseplate 2.7.1 model\s+peak RSS \d+ MiB", out)
    for mix in ("sample", "varied"):
        for schema in ("", ", --schema"):
            for sink in ("sqlite", "jsonl", "kafka"):
                assert re.search(rf"collector, {mix} schema{schema}: {sink} sink\s+[\d,]+ ev/s, "
                                 r"[\d.]+ us CPU/ev per worker\s+[\d.]+x floor, [\d.]+ busy "
                                 r"workers per 100k ev/s", out), (mix, schema, sink, out)
        assert re.search(rf"collector, {mix} schema: floor \(msgspec.json.decode per event\)"
                         r"\s+[\d.]+ us CPU/ev", out), (mix, out)
        for stage in ("gunzip", "HMAC-SHA256 check", "parse (msgspec.json.decode: the floor)",
                      "parse + walk + uuid, compiled (kafka, jsonl)",
                      "walk into documents (read_struct, sqlite)", "uuid of a document",
                      "decode into documents (sqlite)", "store: sqlite", "store: jsonl",
                      "store: kafka"):
            assert re.search(rf"collector stage, {mix} schema: {re.escape(stage)}\s+[\d.]+ us "
                             r"CPU/ev\s+[\d.]+x floor", out), (mix, stage, out)
    for label in ("jsonl file, fields by id", "jsonl file, --schema (fields by name)"):
        assert re.search(rf"baseplate-events-tail, {re.escape(label)}\s+[\d,]+ ev/s\s+"
                         r"[\d.]+x the 50,000 ev/s target", out), (label, out)
    assert before == _bench_queues()


def test_the_shapes_benchmark_prints_both_mixes_and_each_row():
    """``python -m benchmarks.collector_shapes``: a recursive schema, containers seen empty."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.collector_shapes"], cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    assert 0 == result.returncode, result.stderr[-3000:]
    for mix in ("mostly empty", "always empty"):
        assert re.search(rf"^{mix}: 500 events of \d+ bytes per batch", result.stdout, re.M)
    for row in ("floor: msgspec.json.decode of each event", "decode, checked only, shape learned",
                "decode, checked only, --schema Listing"):
        assert 2 == len(re.findall(rf"{re.escape(row)}\s+[\d.]+ µs\s+[\d.]+x floor",
                                   result.stdout)), (row, result.stdout)
