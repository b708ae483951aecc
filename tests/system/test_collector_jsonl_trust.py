"""The JSONL directory is a trust boundary: private modes whatever the umask, planted
directories and files refused, driven through the real collector and publisher."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

import pytest

from baseplate_events.collector.sinks.jsonl import JSONLSink, create
from baseplate_events.errors import ConfigError
from baseplate_events.mqueue.posix import MessageQueue

from tests.support.publisher import PublisherProcess, put_all, uuids_of
from tests.support.service import CollectorProcess, jsonl_uuids, v1_event, wait_for_lines
from tests.support.users import needs_root, run_as, throwaway_uid

pytestmark = pytest.mark.system

FORGED = b'{"uuid":"00000000-0000-4000-8000-000000000000","stream":"v2j","received_ms":1,' \
         b'"event":{"forged":true}}\n'


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def deliver(events_dir: Path, queue: MessageQueue, publisher_for: Callable[..., PublisherProcess],
            tmp_path: Path, *options: str, count: int = 10) -> list:
    """Run the collector (umask 000) on ``events_dir`` and a publisher; ``count`` events through."""
    collector = CollectorProcess("--sink", "jsonl", "--option", f"jsonl.directory={events_dir}",
                                 *options, umask=0, log=tmp_path / "collector.log")
    with collector:
        publisher = publisher_for(collector.hostname, **{"collector.version": "1"}).start()
        events = [v1_event(i) for i in range(count)]
        put_all(queue, events)
        wait_for_lines(events_dir, count)
        assert 0 == publisher.stop()
        assert 0 == collector.stop()
    return uuids_of(events)


def test_files_are_0600_and_the_directory_0700_under_umask_000(
    tmp_path: Path, small_reader: MessageQueue, publisher_for: Callable[..., PublisherProcess]
):
    """By default files are 0600 and the directory 0700 even when the umask gives all."""
    events_dir = tmp_path / "events"
    sent = deliver(events_dir, small_reader, publisher_for, tmp_path)
    assert sorted(sent) == sorted(jsonl_uuids(events_dir))
    files = list(events_dir.iterdir())
    assert files and {0o600} == {mode_of(f) for f in files}
    assert 0o700 == mode_of(events_dir)


def test_a_reader_group_mode_gives_0640_files_in_a_setgid_0750_directory(
    tmp_path: Path, small_reader: MessageQueue, publisher_for: Callable[..., PublisherProcess]
):
    """jsonl.mode = 0640: files 0640, the directory 2750 (setgid keeps the reader group)."""
    events_dir = tmp_path / "events"
    sent = deliver(events_dir, small_reader, publisher_for, tmp_path, "--option",
                   "jsonl.mode=0640")
    assert sorted(sent) == sorted(jsonl_uuids(events_dir))
    assert {0o640} == {mode_of(f) for f in events_dir.iterdir()}
    assert 0o2750 == mode_of(events_dir)


def test_a_group_that_moves_files_gets_0660_files_in_a_setgid_0770_directory(tmp_path: Path):
    """jsonl.mode = 0660 under umask 077: files 0660, the directory 2770."""
    old = os.umask(0o077)
    try:
        sink = create({"directory": str(tmp_path / "events"), "mode": "0660"})
    finally:
        os.umask(old)
    from tests.collector.test_collector_jsonl import event

    sink.store("v2j", [event()])
    sink.close()
    assert {0o660} == {mode_of(f) for f in (tmp_path / "events").iterdir()}
    assert 0o2770 == mode_of(tmp_path / "events")


def test_a_mode_outside_the_three_is_refused(tmp_path: Path):
    """jsonl.mode = 0644 is refused, naming the key and the three modes."""
    with pytest.raises(ConfigError) as raised:
        create({"directory": str(tmp_path), "mode": "0644"})
    assert ("jsonl.mode: expected 0600, 0640 or 0660 (the files' mode: private, read by a "
            "group, moved by a group), got '0644'") == str(raised.value)


def test_the_collector_refuses_a_directory_writable_by_others(tmp_path: Path):
    """A 0777 directory of ours: the collector exits 2 naming it; the forged file stays."""
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    events_dir.chmod(0o777)
    (events_dir / "v2j-forged.jsonl.part").write_bytes(FORGED)
    result = CollectorProcess("--sink", "jsonl", "--option",
                              f"jsonl.directory={events_dir}").run()
    assert 2 == result.returncode
    assert result.stderr.endswith(
        f"error: jsonl.directory: {events_dir} is writable by others (mode 0777); another "
        f"user could have put files there (check them, then chmod 0700 {events_dir})\n")
    assert ["v2j-forged.jsonl.part"] == os.listdir(events_dir)


def test_a_group_writable_directory_is_refused_unless_the_group_may_write(tmp_path: Path):
    """0770 is refused with jsonl.mode 0600 or 0640, and taken with 0660."""
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    events_dir.chmod(0o770)
    for mode in ("0600", "0640"):
        with pytest.raises(ConfigError) as raised:
            create({"directory": str(events_dir), "mode": mode})
        assert str(raised.value).startswith(
            f"jsonl.directory: {events_dir} is writable by its group (mode 0770)")
    create({"directory": str(events_dir), "mode": "0660"}).close()
    assert 0o2770 == mode_of(events_dir)


def test_a_symlink_is_refused_even_our_own(tmp_path: Path):
    """The directory given as a symlink (even to a private directory of ours) is refused."""
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "events").symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError) as raised:
        create({"directory": str(tmp_path / "events")})
    assert (f"jsonl.directory: {tmp_path / 'events'} is a symlink; refusing to follow it "
            "(give the real directory's path instead)") == str(raised.value)


@needs_root
def test_a_directory_planted_by_another_user_is_refused():
    """Another user's 0777 events directory in a shared sticky parent: exit 2, named."""
    shared = Path(tempfile.mkdtemp(prefix="bpe-shared-", dir="/tmp"))
    os.chmod(shared, 0o1777)
    try:
        planted_and_refused(shared)
    finally:
        shutil.rmtree(shared)


def planted_and_refused(shared: Path) -> None:
    uid = throwaway_uid()

    def plant() -> None:
        os.mkdir(shared / "events", 0o777)
        os.chmod(shared / "events", 0o777)
        (shared / "events" / "v2j-forged.jsonl.part").write_bytes(FORGED)

    run_as(uid, uid, plant)
    result = CollectorProcess("--sink", "jsonl", "--option",
                              f"jsonl.directory={shared / 'events'}").run()
    assert 2 == result.returncode
    assert result.stderr.endswith(
        f"error: jsonl.directory: {shared / 'events'} belongs to uid {uid}, not to this user "
        "(uid 0 (root)); events must not sit in a directory others control\n")
    assert ["v2j-forged.jsonl.part"] == os.listdir(shared / "events")


@needs_root
def test_recovery_leaves_a_part_file_of_another_user(tmp_path: Path, caplog):
    """A .part of another user in our directory is not renamed for readers, and is logged."""
    events_dir = tmp_path / "events"
    events_dir.mkdir(mode=0o700)
    forged = events_dir / "v2j-forged.jsonl.part"
    forged.write_bytes(FORGED)
    os.chown(forged, throwaway_uid(), 0)
    JSONLSink(str(events_dir)).close()
    assert ["v2j-forged.jsonl.part"] == os.listdir(events_dir)
    assert f"jsonl: left {forged} alone: it belongs to uid " in caplog.text


def test_recovery_leaves_a_part_file_others_can_write(tmp_path: Path, caplog):
    """A .part of ours that its group can write (jsonl.mode 0600) is left alone."""
    events_dir = tmp_path / "events"
    events_dir.mkdir(mode=0o700)
    planted = events_dir / "v2j-planted.jsonl.part"
    planted.write_bytes(FORGED)
    planted.chmod(0o620)
    JSONLSink(str(events_dir)).close()
    assert ["v2j-planted.jsonl.part"] == os.listdir(events_dir)
    assert (f"jsonl: left {planted} alone: it is writable by its group (mode 0620); it is not "
            "ours to hand to readers (check it, then remove it)") in caplog.text


def test_recovery_adopts_a_private_part_file_of_ours(tmp_path: Path):
    """A 0600 .part of ours (a collector killed mid-file) is finished into .jsonl."""
    events_dir = tmp_path / "events"
    events_dir.mkdir(mode=0o700)
    left = events_dir / "v2j-left.jsonl.part"
    left.write_bytes(FORGED + b'{"uuid":"half')
    left.chmod(0o600)
    JSONLSink(str(events_dir)).close()
    assert ["v2j-left.jsonl"] == os.listdir(events_dir)
    assert FORGED == (events_dir / "v2j-left.jsonl").read_bytes()
