"""The operator's queue tool, on real queues."""
from __future__ import annotations

import pytest
import io
import subprocess
import sys

from baseplate_events.mqueue.tool import main

from tests.conftest import unique_queue_name


def run(*argv, stdin=""):
    out = io.StringIO()
    status = main(list(argv), stdin=io.StringIO(stdin), stdout=out)
    return status, out.getvalue()


def test_create_stats_write_read_unlink(capsys):
    """The whole life of a queue through the tool."""
    name = unique_queue_name("tool")
    try:
        assert (0, f"/events-{name}: max_messages=5 max_message_size=200\n") == run(
            name, "--create", "--max-messages", "5", "--max-message-size", "200"
        )
        assert (0, "wrote 2 message(s)\n") == run(name, "--write", stdin='{"a": 1}\n\nsecond\n')
        assert (0, f"/events-{name}: depth=2 max_messages=5 max_message_size=200\n") == run(
            name, "--stats"
        )
        assert (0, '{"a": 1}\nsecond\n') == run(name, "--read")
        assert "read 2 message(s)" in capsys.readouterr().err
    finally:
        assert (0, f"/events-{name}: unlinked\n") == run(name, "--unlink")


def test_write_stops_at_full_queue(capsys):
    """--write reports the line that did not fit and how many were written."""
    name = unique_queue_name("tool")
    try:
        run(name, "--create", "--max-messages", "1", "--max-message-size", "64")
        status, _ = run(name, "--write", stdin="a\nb\n")
        assert 1 == status
        expected = "error: line 2: the queue is full (1 messages); 1 written\n"
        assert expected == capsys.readouterr().err
    finally:
        run(name, "--unlink")


def test_read_limit(capsys):
    """--read --limit N consumes at most N messages."""
    name = unique_queue_name("tool")
    try:
        run(name, "--create", "--max-messages", "3", "--max-message-size", "64")
        run(name, "--write", stdin="a\nb\nc\n")
        assert (0, "a\n") == run(name, "--read", "--limit", "1")
        assert (0, f"/events-{name}: depth=2 max_messages=3 max_message_size=64\n") == run(
            name, "--stats"
        )
    finally:
        run(name, "--unlink")


def test_missing_queue_is_an_error(capsys):
    """--stats on a queue that does not exist exits 1 with one line."""
    name = unique_queue_name("tool")
    assert (1, "") == run(name, "--stats")
    assert f"error: message queue /events-{name} does not exist\n" == capsys.readouterr().err


@pytest.mark.system
def test_runs_as_a_module():
    """python -m baseplate_events.queue_tool works from the shell."""
    name = unique_queue_name("tool")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "baseplate_events.queue_tool", name, "--create",
             "--max-messages", "2", "--max-message-size", "32"],
            capture_output=True, text=True, timeout=30,
        )
        assert 0 == result.returncode
        assert f"/events-{name}: max_messages=2 max_message_size=32\n" == result.stdout
    finally:
        run(name, "--unlink")
