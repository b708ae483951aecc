"""Under gunicorn the collector's own lines go to gunicorn's error log, naming the sink."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baseplate_events.collector.sinks.kafka import KafkaSettings, KafkaSink
from tests.support.processes import reap
from tests.system.test_collector import SECRET

REPO = str(Path(__file__).resolve().parent.parent.parent)


def _wait_for(path: Path, pattern: str, process: subprocess.Popen, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        assert process.poll() is None, text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path}:\n{text}")


@pytest.mark.system
def test_the_start_line_goes_to_gunicorns_error_log_with_the_sinks_directory(
    tmp_path: Path,
) -> None:
    """gunicorn --error-logfile FILE gets each worker's start line, naming the JSONL directory."""
    out = tmp_path / "events"
    settings = {"keys": {"demo": SECRET}, "sink": "jsonl", "jsonl.directory": str(out)}
    error_log = tmp_path / "error.log"
    console = tmp_path / "console.log"
    with open(console, "wb") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:0",
             "--error-logfile", str(error_log),
             f"baseplate_events.collector:make_app({settings!r})"],
            stdout=stream, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        text = _wait_for(error_log, r"collector app made in process", process)
        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(timeout=20), error_log.read_text()
    finally:
        reap(process)
    worker = re.search(r"Booting worker with pid: (\d+)", text)
    assert worker is not None, text
    assert (f"[{worker.group(1)}] [INFO] collector app made in process {worker.group(1)} "
            f"(keys: demo; sink: jsonl {out} (files 0600))") in text
    assert "collector app made" not in console.read_text()


def test_the_kafka_sink_describes_its_brokers_and_topics() -> None:
    """The Kafka sink's start-line words name the brokers and each stream's topic."""
    sink = KafkaSink(KafkaSettings.from_options({"bootstrap_servers": "kafka-1:9092,kafka-2:9092",
                                                 "topic.v2": "events"}))
    try:
        described = sink.describe()
    finally:
        sink.close()
    assert ("kafka brokers kafka-1:9092,kafka-2:9092 (topics v1 -> events.v1, "
            "v2 -> events, v2j -> events.v2j)") == described
