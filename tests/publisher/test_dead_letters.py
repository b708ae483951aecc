"""The dead-letter file: what is written reads back byte for byte, within its budget, whole."""
from __future__ import annotations

import pytest
import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from publisher.send.dead_letters import DeadLetter, DeadLetters, UnreadableLine, encode, read

from tests.support.publisher import ROOT


def test_events_read_back_byte_for_byte(tmp_path: Path):
    """UTF-8 events (kept as text) and other bytes (kept in base64) come back unchanged."""
    path = tmp_path / "dead.jsonl"
    events = [b'{"a":"caf\xc3\xa9 \xf0\x9f\x8e\x89"}', b'{"b":"\xff\xfe"}']
    assert 0 == DeadLetters(str(path), "main").write(events, 422, "bad field")
    read_back = list(read(str(path)))
    assert events == [letter.event for letter in read_back]  # type: ignore[union-attr]
    assert [("main", 422, "bad field")] * 2 == [
        (letter.queue, letter.status, letter.reason) for letter in read_back  # type: ignore[union-attr]
    ]


def test_unreadable_lines_are_named_by_number(tmp_path: Path):
    """A line of garbage and a torn last line are reported with their numbers, not sent."""
    path = tmp_path / "dead.jsonl"
    [good] = encode([b'{"n":1}'], "main", 422, "x")
    path.write_bytes(good + b"garbage\n" + good + good[:10])
    kinds = [(type(item), item.line) for item in read(str(path))]
    assert [(DeadLetter, 1), (UnreadableLine, 2), (DeadLetter, 3), (UnreadableLine, 4)] == kinds
    # A writer may still be finishing the last line: without partial it is left unread.
    assert [1, 2, 3] == [item.line for item in read(str(path), partial=False)]


def test_budget_keeps_whole_lines_and_returns_what_it_dropped(tmp_path: Path):
    """With room for two lines, three events write two and report one dropped."""
    path = tmp_path / "dead.jsonl"
    lines = encode([b'{"n":1}'] * 3, "main", 422, "x")
    budget = len(lines[0]) * 2 + len(lines[0]) // 2
    assert 1 == DeadLetters(str(path), "main", max_bytes=budget).write([b'{"n":1}'] * 3, 422, "x")
    assert 2 == len(path.read_bytes().splitlines())


def test_a_writer_that_opened_the_file_before_a_replay_renamed_it_writes_to_the_new_one(
    tmp_path: Path,
):
    """A write racing the replay's rename lands in a new file under the name, not the old one."""
    path = tmp_path / "dead.jsonl"
    DeadLetters(str(path), "main").write([b'{"n":1}'], 422, "x")
    before = path.read_bytes()
    holder = os.open(path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as the replay does around its last read
    writer = threading.Thread(
        target=DeadLetters(str(path), "main").write, args=([b'{"n":2}'], 422, "x")
    )
    writer.start()
    # Wait until the writer has the old file open (it then blocks on the lock).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _opened_twice(path):
        time.sleep(0.005)
    os.rename(path, tmp_path / "dead.jsonl.replaying")
    os.close(holder)
    writer.join(5)
    assert before == (tmp_path / "dead.jsonl.replaying").read_bytes()
    assert [b'{"n":2}'] == [letter.event for letter in read(str(path))]  # type: ignore[union-attr]


def _opened_twice(path: Path) -> bool:
    fds = Path("/proc/self/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            pass
    return targets.count(str(path)) >= 2


@pytest.mark.system
def test_a_full_disk_leaves_no_half_line(tmp_path: Path):
    """A write cut short by the file size limit is undone, raised, and the file stays whole."""
    path = tmp_path / "dead.jsonl"
    DeadLetters(str(path), "main").write([b'{"n":1}'], 422, "x")
    before = path.read_bytes()
    # RLIMIT_FSIZE makes the kernel write only part of the data, as a full disk does.
    script = (
        "import resource, signal, sys\n"
        "from publisher.send.dead_letters import DeadLetters\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 50}, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    DeadLetters({str(path)!r}, 'main').write([b'{{\"pad\":\"' + b'x' * 500 + b'\"}}'],"
        " 422, 'x')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__, exc.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=30)
    assert ("OSError 28\n", "") == (done.stdout, done.stderr)
    assert before == path.read_bytes()
