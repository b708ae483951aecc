"""Nothing the collector acknowledges lives only in memory: the SQLite file, by default
``$STATE_DIRECTORY/events.sqlite3``, named at start, shared by gunicorn's workers."""
from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

from baseplate_events.mqueue.posix import MessageQueue

from tests.support.kafka import GunicornCollector
from tests.support.publisher import SECRET_B64, PublisherProcess, put_all, uuids_of
from tests.support.service import CollectorProcess, post_batch, v1_event
from tests.support.users import needs_root, throwaway_uid

pytestmark = pytest.mark.system


def stored(db: Path) -> List[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return [row[0] for row in connection.execute("SELECT uuid FROM events")]


def wait_for_rows(db: Path, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(stored(db)) < count:
        assert time.monotonic() < deadline, f"{len(stored(db))} of {count} events stored"
        time.sleep(0.05)


def without_state_directory() -> dict:
    return {"STATE_DIRECTORY": ""}


def test_a_collector_with_only_a_key_refuses_to_start_naming_sqlite_path():
    """No sqlite.path and no $STATE_DIRECTORY: exit 2 and one line naming sqlite.path."""
    result = CollectorProcess(env=without_state_directory()).run()
    assert 2 == result.returncode
    assert result.stderr.splitlines()[-1] == (
        "python -m baseplate_events.collector: error: sqlite.path: required: the collector "
        "answers 200 only for events on disk, and $STATE_DIRECTORY is not set; give the "
        "database file, e.g. --option sqlite.path=/var/lib/baseplate-events/events.sqlite3")


def test_events_answered_200_survive_kill_9_and_a_restart_in_the_state_directory(
    tmp_path: Path, small_reader: MessageQueue, publisher_for: Callable[..., PublisherProcess]
):
    """Only --key, STATE_DIRECTORY set: 50 events from the publisher are there after kill -9."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = state / "events.sqlite3"
    collector = CollectorProcess(env={"STATE_DIRECTORY": str(state)})
    with collector:
        assert f"sink: sqlite {db} (WAL, shared by every worker))" in collector.start_line
        publisher = publisher_for(collector.hostname, **{"collector.version": "1"}).start()
        events = [v1_event(n) for n in range(50)]
        put_all(small_reader, events)
        wait_for_rows(db, 50)
        collector.process.kill()  # type: ignore[union-attr]
        collector.process.wait()  # type: ignore[union-attr]
        assert 0 == publisher.stop()
    with CollectorProcess(env={"STATE_DIRECTORY": str(state)}) as again:
        assert 200 == post_batch(again.url, [v1_event(50)]).status_code
        assert 0 == again.stop()
    kept = stored(db)
    print(f"FIGURE durable: {len(set(uuids_of(events)) & set(kept))} of 50 events answered 200 "
          "kept after kill -9 and a restart")
    assert set(uuids_of(events)) < set(kept) and 51 == len(kept)


def test_memory_is_taken_only_by_name_and_the_start_warns(tmp_path: Path):
    """sqlite.path=:memory: starts, and both the start line and a warning say events die."""
    log = tmp_path / "collector.log"
    with CollectorProcess("--option", "sqlite.path=:memory:", env=without_state_directory(),
                          log=log) as collector:
        assert collector.start_line.rstrip().endswith(
            "sink: sqlite :memory: (in this process only: acknowledged events die with it))")
        assert 0 == collector.stop()
    assert ("sqlite.path = :memory: keeps events in this process only: events answered 200 "
            "die with it; give a file for anything but a test\n") in log.read_text()


def test_gunicorn_workers_name_the_state_file_and_share_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """gunicorn -w 3, STATE_DIRECTORY set: each worker's start line names the one file,
    and 60 concurrent batches all land in it."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = state / "events.sqlite3"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    gunicorn = GunicornCollector({"keys": f"TestKey={SECRET_B64}"}, tmp_path / "gunicorn.log",
                                 workers=3)
    try:
        answers: List[int] = []
        events = [v1_event(n) for n in range(60)]

        def send(chunk: List[bytes]) -> None:
            for event in chunk:
                answers.append(post_batch(gunicorn.url, [event]).status_code)

        threads = [threading.Thread(target=send, args=(events[i::6],)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        lines = re.findall(r"collector app made in process \d+ \(keys: TestKey; sink: (.*)\)\n",
                           gunicorn.log())
    finally:
        assert 0 == gunicorn.stop()
    assert [f"sqlite {db} (WAL, shared by every worker)"] * 3 == lines
    assert [200] * 60 == answers
    assert sorted(uuids_of(events)) == sorted(stored(db))


def test_the_database_and_its_wal_are_private_whatever_the_umask(tmp_path: Path):
    """Under umask 000 the file SQLite keeps events in, and its WAL files, are 0600."""
    db = tmp_path / "events.sqlite3"
    with CollectorProcess("--option", f"sqlite.path={db}", umask=0) as collector:
        assert 200 == post_batch(collector.url, [v1_event(0)]).status_code
        modes = {path.name: oct(path.stat().st_mode & 0o777) for path in tmp_path.iterdir()}
        assert 0 == collector.stop()
    assert {"events.sqlite3": "0o600", "events.sqlite3-wal": "0o600",
            "events.sqlite3-shm": "0o600"} == modes


def refusal(db: Path) -> "tuple[int, str]":
    """The exit status and last line of a collector started on ``db``."""
    result = CollectorProcess("--option", f"sqlite.path={db}").run()
    return result.returncode, result.stderr.strip().splitlines()[-1]


@needs_root
def test_a_database_file_of_another_user_is_refused(tmp_path: Path):
    """An events file another user made (and can delete) is not written to: exit 1 naming it."""
    uid = throwaway_uid()
    db = tmp_path / "events.sqlite3"
    db.touch(mode=0o600)
    os.chown(db, uid, uid)
    assert (1, f"collector: sqlite: cannot open {db}: it belongs to uid {uid}, not to this "
               f"user; another user could change or delete the events in it (check it, then "
               f"remove it)") == refusal(db)


def test_a_database_path_that_is_a_symlink_is_refused(tmp_path: Path):
    """sqlite.path a symlink, even to a file of ours: exit 1, naming it; nothing is written."""
    target = tmp_path / "target.sqlite3"
    target.touch(mode=0o600)
    db = tmp_path / "events.sqlite3"
    db.symlink_to(target)
    assert (1, f"collector: sqlite: cannot open {db}: it is a symlink; give the file "
               f"itself") == refusal(db)
    assert 0 == target.stat().st_size


def test_a_database_file_others_can_write_is_refused(tmp_path: Path):
    """Our own events file, but mode 0666: exit 1 naming the mode and the chmod that fixes it."""
    db = tmp_path / "events.sqlite3"
    db.touch(mode=0o600)
    os.chmod(db, 0o666)
    assert (1, f"collector: sqlite: cannot open {db}: it is writable by others (mode 0666); "
               f"another user could change or delete the events in it (check it, then chmod "
               f"0600 {db})") == refusal(db)
