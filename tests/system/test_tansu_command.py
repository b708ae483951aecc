"""``python -m demo_app.tansu``: a local Kafka-protocol broker from one command."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo_app.tansu import free_port

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent.parent


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "demo_app.tansu", *args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _first_line(process: subprocess.Popen) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    return line


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_the_command_starts_a_broker_that_makes_topics_with_4_partitions(tmp_path: Path) -> None:
    """It names its address and log; a first message to a topic makes it with 4 partitions."""
    from confluent_kafka import Consumer, Producer

    port = free_port()
    process = _start(tmp_path, "--port", str(port))
    try:
        line = _first_line(process)
        assert (f"tansu: Kafka-protocol broker on 127.0.0.1:{port} (in memory: a restart "
                f"starts empty; topics are created at first use, 4 partitions each); its log: "
                f"{tmp_path / 'tansu.log'}; Ctrl-C or SIGTERM stops it\n") == line
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}"})
        producer.produce("made-by-first-use", key=b"k", value=b"v")
        assert 0 == producer.flush(10)
        consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "check"})
        try:
            partitions = consumer.list_topics(timeout=10).topics["made-by-first-use"].partitions
        finally:
            consumer.close()
        assert 4 == len(partitions)
        assert "listening on: tcp://127.0.0.1:" in (tmp_path / "tansu.log").read_text()
    finally:
        _stop(process)


def test_sigterm_stops_the_broker_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM: 'tansu: stopped', status 0, and the port no longer answers."""
    port = free_port()
    process = _start(tmp_path, "--port", str(port))
    try:
        _first_line(process)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        _stop(process)
    assert (0, "tansu: stopped\n", "") == (process.returncode, out, err)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_is_refused_naming_it(tmp_path: Path) -> None:
    """A taken port: status 1 and one line naming the address and the fix."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "demo_app.tansu", "--port", str(port)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=30,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (1, "", f"tansu: 127.0.0.1:{port} is already in use (another broker?); stop it "
                   f"or choose another port with --port\n") == (
        result.returncode, result.stdout, result.stderr)


def test_kill_9_of_the_command_takes_the_broker_with_it(tmp_path: Path) -> None:
    """kill -9 of the command leaves no broker holding the port."""
    port = free_port()
    process = _start(tmp_path, "--port", str(port))
    try:
        _first_line(process)
        process.kill()
        process.wait(10)
    finally:
        _stop(process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"a broker still answers on port {port} after kill -9")
    log = (tmp_path / "tansu.log").read_text()
    assert re.search(rf"listening on: tcp://127\.0\.0\.1:{port}\b", log), log


def test_a_log_that_cannot_be_written_is_refused_naming_it(tmp_path: Path) -> None:
    """--log in a missing directory: status 1 and one line naming the file and the fix."""
    log = tmp_path / "missing" / "tansu.log"
    result = subprocess.run([sys.executable, "-m", "demo_app.tansu", "--port", "0", "--log",
                             str(log)], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (1, "", f"tansu: cannot write its log {log}: No such file or directory; give another "
                   f"file with --log\n") == (result.returncode, result.stdout, result.stderr)
