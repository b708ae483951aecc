"""The collector commands refuse what they cannot serve with one line naming the flag,
never a traceback, and never start on something other than what was asked."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from tests.support.processes import REPO
from tests.support.service import CollectorProcess

pytestmark = pytest.mark.system

PROG = "python -m baseplate_events.collector"


def last_line(*args: str) -> "tuple[int, str]":
    """Exit status and last line of stderr of the collector run with ``args``."""
    result = CollectorProcess("--option", "sqlite.path=:memory:", *args).run()
    return result.returncode, result.stderr.strip().splitlines()[-1]


def test_a_port_in_use_stops_the_start_naming_it():
    """--port on a port another process listens on: exit 2 naming the address, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        answer = last_line("--port", str(port))
    assert (2, f"{PROG}: error: --host, --port: cannot listen on 127.0.0.1:{port}: Address "
               f"already in use") == answer


def test_a_host_that_does_not_resolve_stops_the_start_naming_it():
    """--host nowhere.invalid: exit 2 naming the flags, no traceback."""
    assert (2, f"{PROG}: error: --host, --port: cannot listen on nowhere.invalid:0: Invalid "
               f"host/port specified.") == last_line("--host", "nowhere.invalid")


def test_a_port_past_65535_is_refused():
    """--port 70000 is refused, not wrapped round to port 4464."""
    assert (2, f"{PROG}: error: argument --port: expected a port number, 0 to 65535, got "
               f"'70000'") == last_line("--port", "70000")


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_threads_below_one_are_refused(threads: str):
    """--threads 0 would listen and answer nothing: refused naming the flag."""
    assert (2, f"{PROG}: error: argument --threads: expected a positive integer, got "
               f"'{threads}'") == last_line("--threads", threads)


def run_demo(args: List[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "demo_app.collector", "--port", "0",
                           "--key", "demo=c2VjcmV0", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=30)


def test_the_demo_collector_names_a_database_it_cannot_open(tmp_path: Path):
    """--db in a missing directory: exit 1 and one line naming the file, no traceback."""
    db = tmp_path / "missing" / "events.sqlite3"
    result = run_demo(["--db", str(db)])
    assert (1, f"collector: sqlite: cannot open {db}: cannot create the file: No such file or "
               f"directory") == (result.returncode, result.stderr.strip().splitlines()[-1])
    assert "Traceback" not in result.stderr
