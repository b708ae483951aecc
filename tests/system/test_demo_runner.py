"""``python -m demo_app`` as a user runs it: a real subprocess tree, real queues, real HTTP."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from baseplate_events.mqueue.posix import MessageQueue, MessageQueueError
from demo_app.progress import table
from demo_app.report import Delivery, percentile, summarize

pytestmark = pytest.mark.system

REPO = str(Path(__file__).resolve().parent.parent.parent)


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_demo(*args: str, sigint_ignored: bool = False) -> subprocess.Popen:
    """Start ``python -m demo_app``; with ``sigint_ignored`` as a background job of a script is."""
    return subprocess.Popen(
        [sys.executable, "-m", "demo_app", *args], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=ignore_sigint if sigint_ignored else None,
    )


def queues_of(output: str) -> List[str]:
    run_id = re.search(r"demo, run (\S+) ", output)
    assert run_id is not None, output
    return [f"/events-{run_id.group(1)}-v2", f"/events-{run_id.group(1)}-v1"]


def assert_gone(queue: str) -> None:
    with pytest.raises(MessageQueueError, match="does not exist"):
        MessageQueue(queue, 10, 8192, create=False)


def test_the_demo_delivers_every_event_then_stops_and_unlinks_everything() -> None:
    """A short run ends with delivered N/N, exit status 0, and no queue left behind."""
    process = run_demo("--requests", "60")
    output, _ = process.communicate(timeout=60)
    lines = output.strip().splitlines()
    assert (0, "delivered 60/60") == (process.returncode, lines[-1]), output
    assert "to fit the kernel's stock limits" in output
    assert re.search(r"^total\s+60\s+60\s+0\s+\d+ ms\s+\d+ ms$", output, re.M), output
    for queue in queues_of(output):
        assert_gone(queue)


def test_the_demo_onto_kafka_reads_every_event_back_from_the_topics() -> None:
    """--sink kafka: the collector writes to a Tansu broker; the summary, read back, is N/N."""
    process = run_demo("--sink", "kafka", "--requests", "60")
    output, _ = process.communicate(timeout=90)
    lines = output.strip().splitlines()
    assert (0, "delivered 60/60") == (process.returncode, lines[-1]), output
    assert re.search(r"^kafka: Tansu broker \(in memory\) at 127\.0\.0\.1:\d+, pid \d+; "
                     r"topics events\.v1 and events\.v2$", output, re.M), output
    assert re.search(r"^total\s+60\s+60\s+0\s+\d+ ms\s+\d+ ms$", output, re.M), output
    assert "read back from Kafka topics events.v1, events.v2, events.v2j at 127.0.0.1:" in output
    for queue in queues_of(output):
        assert_gone(queue)


def test_a_kafka_broker_paused_mid_burst_costs_503s_and_loses_nothing() -> None:
    """--broker-pause: the collector answers 503 while the broker is stopped; all arrive."""
    process = run_demo("--sink", "kafka", "--requests", "200", "--broker-pause", "3")
    output, _ = process.communicate(timeout=120)
    lines = output.strip().splitlines()
    answered = re.search(r"the publishers were answered 503 (\d+) times$", output, re.M)
    assert (0, "delivered 200/200") == (process.returncode, lines[-1]), output
    assert "broker resumed (SIGCONT) after 3 s" in output
    assert answered is not None and int(answered.group(1)) >= 1, output


def test_broker_pause_without_the_kafka_sink_is_refused() -> None:
    """--broker-pause has no broker to pause with the SQLite sink: a usage error, status 2."""
    process = run_demo("--broker-pause", "3")
    output, _ = process.communicate(timeout=30)
    assert 2 == process.returncode
    assert output.strip().splitlines()[-1] == (
        "python -m demo_app: error: --broker-pause: needs --sink kafka (it pauses the Kafka "
        "broker)")


def test_a_collector_outage_mid_burst_loses_nothing() -> None:
    """--outage: the collector is down for a second of the burst; every event still arrives."""
    process = run_demo("--requests", "100", "--outage", "1")
    output, _ = process.communicate(timeout=60)
    assert (0, "delivered 100/100") == (process.returncode, output.strip().splitlines()[-1]), output
    assert "collector back after 1 s down, on the same port" in output
    for queue in queues_of(output):
        assert_gone(queue)


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["sigint-default", "sigint-ignored"])
def test_ctrl_c_stops_every_process_and_unlinks_the_queues(sigint_ignored: bool) -> None:
    """SIGINT mid-burst: exit 130, children stopped, queues gone, even if started ignoring it."""
    process = run_demo("--requests", "100000", sigint_ignored=sigint_ignored)
    assert process.stdout is not None
    seen: List[str] = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("requests "):
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    output = "".join(seen) + rest
    assert 130 == process.returncode, output
    assert "interrupted; stopping everything" in output
    pids = re.search(r"publishers pid (\d+), (\d+)", output)
    assert pids is not None, output
    for pid in pids.groups():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    for queue in queues_of(output):
        assert_gone(queue)
    workdir = re.search(r"\(logs in (\S+)\)", output)
    assert workdir is not None and not os.path.exists(workdir.group(1)), output


def test_percentile_is_nearest_rank() -> None:
    """p50 and p99 of 1..100 are 50 and 99; of nothing, None."""
    values = [float(n) for n in range(100, 0, -1)]
    assert (50.0, 99.0, None) == (percentile(values, 0.5), percentile(values, 0.99),
                                  percentile([], 0.5))


def test_the_summary_counts_put_delivered_and_duplicates_per_stream() -> None:
    """One row per stream and a total; a missing event shows in delivered and missing()."""
    now = int(time.time() * 1000)
    stored = {
        "a": {"received_ms": now + 10, "timestamp_ms": now, "receipts": 1},
        "b": {"received_ms": now + 30, "timestamp_ms": now, "receipts": 2},
    }
    delivery = Delivery({"pyramid v2": ["a", "b"], "flask v1": ["c"]}, stored)
    assert (["c"], 3, 2) == (delivery.missing(), delivery.total_put(), delivery.total_delivered())
    assert [
        "stream      put  delivered  duplicates  p50 put->collector    p99",
        "----------  ---  ---------  ----------  ------------------  -----",
        "flask v1      1          0           0                   -      -",
        "pyramid v2    2          2           1               10 ms  30 ms",
        "total         3          2           1               10 ms  30 ms",
    ] == summarize(delivery, table).splitlines()
