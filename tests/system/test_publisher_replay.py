"""``python -m publisher --replay-dead-letter FILE config.ini``, run for real."""
from __future__ import annotations

import pytest
import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import List

from publisher.send.dead_letters import DeadLetters, encode

from tests.conftest import fill_disk
from tests.support.collector import LocalCollector
from tests.support.publisher import ROOT, SECRET, config_file, make_event

pytestmark = pytest.mark.system


def replay_command(queue_name: str, config: Path, dead: Path) -> List[str]:
    return [sys.executable, "-m", "publisher", "--queue-name", queue_name,
            "--replay-dead-letter", str(dead), str(config)]


def replay(queue_name: str, config: Path, dead: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(replay_command(queue_name, config, dead), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60)


def dead_letter_file(path: Path, count: int, queue: str) -> List[str]:
    """A dead-letter file of ``count`` events as ``queue``'s publisher writes it; their uuids."""
    events = [make_event(n) for n in range(count)]
    DeadLetters(str(path), queue).write(events, 422, "poison event")
    return [json.loads(e)["uuid"] for e in events]


def test_replay_sends_the_events_and_archives_the_file(queue_name: str, tmp_path: Path):
    """Once the collector takes them, every event is sent, and FILE becomes FILE.replayed."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    ids = dead_letter_file(dead, 5, queue_name)
    with LocalCollector(SECRET, version="2j") as collector:
        config = config_file(queue_name, collector.hostname, tmp_path)
        done = replay(queue_name, config, dead)
    assert 0 == done.returncode, done.stderr
    assert ids == collector.uuids()
    assert (
        f"replay of {dead}: sent 5 events; 0 refused again, written to {dead}; "
        f"0 unreadable lines skipped; archived as {dead}.replayed\n"
    ) == done.stdout
    assert (False, True) == (dead.exists(), (tmp_path / "spool" / "dead-letter.jsonl.replayed")
                             .exists())


def test_replay_sets_aside_again_what_the_collector_still_refuses(
    queue_name: str, tmp_path: Path
):
    """An event still refused while its neighbours are accepted goes back to the dead letters."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    ids = dead_letter_file(dead, 6, queue_name)
    with LocalCollector(SECRET, version="2j") as collector:
        collector.poison = lambda e: e["uuid"] == ids[2]
        config = config_file(queue_name, collector.hostname, tmp_path)
        done = replay(queue_name, config, dead)
    assert 0 == done.returncode, done.stderr
    assert [i for i in ids if i != ids[2]] == collector.uuids()
    assert [ids[2]] == [json.loads(json.loads(line)["event"])["uuid"]
                        for line in dead.read_text().splitlines()]
    assert "sent 5 events; 1 refused again" in done.stdout


def test_replay_stops_while_the_collector_refuses_everything(queue_name: str, tmp_path: Path):
    """A collector still answering 400 to all: exit 1, nothing dead-lettered, a rerun finishes."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    ids = dead_letter_file(dead, 4, queue_name)
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_for(60, 400)
        config = config_file(queue_name, collector.hostname, tmp_path)
        stopped = replay(queue_name, config, dead)
        collector.fail_for(0)
        done = replay(queue_name, config, dead)
    assert (1, 0) == (stopped.returncode, done.returncode), stopped.stderr + done.stderr
    assert (
        f"replay of {dead} stopped: the collector still refuses these events (400: scripted "
        "400) and accepted nothing else since; sent 0 events, 0 refused again; the rest stay "
        f"in {dead}.replaying: run the same command again once the collector is fixed (that "
        "file goes first; move it away to skip its events)\n"
    ) == stopped.stdout
    assert sorted(ids) == sorted(collector.uuids())
    assert not dead.exists()


def test_replay_killed_midway_resumes_without_losing_an_event(queue_name: str, tmp_path: Path):
    """kill -9 during a replay of 240 events: a rerun sends the rest; at most one batch twice."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    ids = dead_letter_file(dead, 240, queue_name)
    with LocalCollector(SECRET, version="2j") as collector:
        collector.delay = 0.02
        config = config_file(queue_name, collector.hostname, tmp_path,
                             **{"batch.max_bytes": "1000"})
        process = subprocess.Popen(replay_command(queue_name, config, dead), cwd=str(ROOT),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            collector.wait_for_events(60, timeout=20)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        sent_before = len(collector.uuids())
        collector.delay = 0
        done = replay(queue_name, config, dead)
    assert 0 == done.returncode, done.stderr
    assert 60 <= sent_before < 240
    received = Counter(collector.uuids())
    assert set(ids) == set(received)
    per_batch = (1000 - 2) // (len(make_event(0)) + 1)
    assert sum(n - 1 for n in received.values()) <= per_batch


def test_replay_reports_unreadable_lines_and_keeps_them(queue_name: str, tmp_path: Path):
    """A garbage line is named by number, skipped, and kept in the archived file."""
    dead = tmp_path / "dead.jsonl"
    [good] = encode([make_event(0)], queue_name, 422, "x")
    dead.write_bytes(good + b"garbage\n" + good)
    with LocalCollector(SECRET, version="2j") as collector:
        config = config_file(queue_name, collector.hostname, tmp_path)
        done = replay(queue_name, config, dead)
    assert 0 == done.returncode, done.stderr
    assert "sent 2 events; 0 refused again" in done.stdout
    assert "1 unreadable lines skipped" in done.stdout
    assert f"line 2 of {dead}.replayed holds no event (not JSON (" in done.stderr
    assert good + b"garbage\n" + good == (tmp_path / "dead.jsonl.replayed").read_bytes()


def test_replay_of_a_missing_file_is_an_error(queue_name: str, tmp_path: Path):
    """A FILE that is not there: exit 2 and one line naming it."""
    config = config_file(queue_name, "127.0.0.1:9", tmp_path)
    done = replay(queue_name, config, tmp_path / "nope.jsonl")
    assert (2, f"baseplate-events-publisher: error: {tmp_path}/nope.jsonl: no such dead-letter "
               "file\n") == (done.returncode, done.stderr.splitlines(True)[-1])


def test_a_second_replay_at_the_same_time_is_refused(queue_name: str, tmp_path: Path):
    """While one replay runs, another in the same directory exits 2 saying so."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    dead_letter_file(dead, 20, queue_name)
    with LocalCollector(SECRET, version="2j") as collector:
        collector.delay = 0.5
        config = config_file(queue_name, collector.hostname, tmp_path, **{"batch.max_bytes": "400"})
        first_output = tmp_path / "first.out"
        with open(first_output, "wb") as out:
            first = subprocess.Popen(replay_command(queue_name, config, dead), cwd=str(ROOT),
                                     stdout=out, stderr=subprocess.DEVNULL)
        try:
            collector.wait_for_requests(1)
            second = replay(queue_name, config, dead)
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(10)
    assert (2, f"baseplate-events-publisher: error: {dead.parent}: another replay is running "
               "there\n") == (second.returncode, second.stderr.splitlines(True)[-1])
    assert 1 == first.returncode
    assert "stopped by a signal; sent " in first_output.read_text()


def test_a_leftover_of_an_interrupted_replay_goes_first_from_its_saved_offset(
    queue_name: str, tmp_path: Path
):
    """FILE.replaying with 2 of 4 lines sent, and FILE: the 2 left, then FILE; both archived."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    old_ids = dead_letter_file(tmp_path / "spool" / "dead-letter.jsonl.replaying", 4, queue_name)
    lines = (tmp_path / "spool" / "dead-letter.jsonl.replaying").read_bytes().splitlines(True)
    (tmp_path / "spool" / "dead-letter.jsonl.replaying.sent").write_text(
        f"{len(lines[0]) + len(lines[1])}\n")
    new_ids = dead_letter_file(dead, 2, queue_name)
    with LocalCollector(SECRET, version="2j") as collector:
        config = config_file(queue_name, collector.hostname, tmp_path)
        done = replay(queue_name, config, dead)
    assert 0 == done.returncode, done.stderr
    assert old_ids[2:] + new_ids == collector.uuids()
    assert [
        f"replay of {dead}: sent 2 events; 0 refused again, written to {dead}; "
        f"0 unreadable lines skipped; archived as {dead}.replayed",
        f"replay of {dead}: sent 2 events; 0 refused again, written to {dead}; "
        f"0 unreadable lines skipped; archived as {dead}.replayed.2",
    ] == done.stdout.splitlines()
    assert ["dead-letter.jsonl.replayed", "dead-letter.jsonl.replayed.2"] == sorted(
        p.name for p in (tmp_path / "spool").iterdir() if p.name.startswith("dead-letter"))


def test_an_offset_left_by_a_replay_killed_after_archiving_is_not_applied_to_a_fresh_file(
    queue_name: str, tmp_path: Path
):
    """kill -9 between archiving and removing FILE.replaying.sent: the next FILE goes whole."""
    spool = tmp_path / "spool"
    dead = spool / "dead-letter.jsonl"
    dead_letter_file(spool / "dead-letter.jsonl.replayed", 5, queue_name)
    # What that kill leaves: the archive, and the offset at its end beside no FILE.replaying.
    (spool / "dead-letter.jsonl.replaying.sent").write_text(
        f"{(spool / 'dead-letter.jsonl.replayed').stat().st_size}\n")
    ids = dead_letter_file(dead, 8, queue_name)
    with LocalCollector(SECRET, version="2j") as collector:
        config = config_file(queue_name, collector.hostname, tmp_path)
        done = replay(queue_name, config, dead)
    assert 0 == done.returncode, done.stderr
    assert ids == collector.uuids()
    assert [f"replay of {dead}: sent 8 events; 0 refused again, written to {dead}; "
            f"0 unreadable lines skipped; archived as {dead}.replayed.2"
            ] == done.stdout.splitlines()
    assert ["dead-letter.jsonl.replayed", "dead-letter.jsonl.replayed.2"] == sorted(
        p.name for p in spool.iterdir() if p.name.startswith("dead-letter"))


def test_replay_on_a_full_disk_stops_with_one_line_and_resumes(
    queue_name: str, tmp_path: Path, small_disk: str
):
    """No room for the offset file: exit 1 naming it, nothing half-written; a rerun resumes."""
    dead = Path(small_disk) / "dead-letter.jsonl"
    ids = dead_letter_file(dead, 10, queue_name)
    filler = Path(small_disk) / "filler"
    fill_disk(str(filler))
    with LocalCollector(SECRET, version="2j") as collector:
        config = config_file(queue_name, collector.hostname, tmp_path,
                             **{"batch.max_bytes": "1000"})
        full = replay(queue_name, config, dead)
        filler.unlink()
        left = sorted(p.name for p in Path(small_disk).iterdir())
        done = replay(queue_name, config, dead)
    working = f"{dead}.replaying"
    assert (1, f"baseplate-events-publisher: error: {working}.sent: cannot save the replay's "
               f"progress (No space left on device); the rest stay in {working}: make room and "
               "run the same command again (the last batch sent goes twice)\n"
            ) == (full.returncode, full.stderr.splitlines(True)[-1])
    assert ["dead-letter.jsonl.replaying"] == left
    assert 0 == done.returncode, done.stderr
    received = Counter(collector.uuids())
    assert set(ids) == set(received)
    per_batch = (1000 - 2) // (len(make_event(0)) + 1)
    assert sum(n - 1 for n in received.values()) <= per_batch
    assert ["dead-letter.jsonl.replayed"] == sorted(p.name for p in Path(small_disk).iterdir())
