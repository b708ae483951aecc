"""Spool and landing paths: another local user cannot plant a symlink or a directory there.

The tests that plant things as a second user (``nobody``) need root, and
skip saying so without it.
"""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from baseplate_events.mqueue.posix import MessageQueue
from publisher.config.table import default_spool_path, legacy_spool_path
from publisher.intake.landing import Landing, landing_directory, landing_path
from publisher.paths import UnsafePathError, open_private_directory
from publisher.spool.store import Spool, SpoolError

from tests.support.collector import LocalCollector
from tests.support.landing import receive
from tests.support.publisher import (
    QUEUE_MESSAGE_SIZE,
    SECRET,
    PublisherProcess,
    make_event,
    put_all,
    run_refused,
    uuids_of,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: plants symlinks and directories as a second user (nobody)"
)
PREFIX = "baseplate-events-publisher: error: "


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def as_nobody(*command: str) -> None:
    """Run ``command`` as the second local user."""
    user = nobody()
    subprocess.run(list(command), user=user.pw_uid, group=user.pw_gid, check=True)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A root-owned sticky directory every user can write to, like /var/tmp."""
    path = Path(tempfile.mkdtemp(prefix="bpe-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path)


def opened(path: Path) -> os.stat_result:
    fd = open_private_directory(str(path))
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def test_missing_components_are_created_private(tmp_path: Path):
    """Each missing component is created, owned by us and mode 0700."""
    opened(tmp_path / "a" / "b")
    modes = {stat.S_IMODE(os.lstat(p).st_mode) for p in (tmp_path / "a", tmp_path / "a" / "b")}
    assert {0o700} == modes


def test_a_readable_directory_is_made_private(tmp_path: Path):
    """An existing directory of ours that others can read is made 0700, as before."""
    (tmp_path / "s").mkdir(mode=0o755)
    os.chmod(tmp_path / "s", 0o755)
    assert 0o700 == stat.S_IMODE(opened(tmp_path / "s").st_mode)


def test_a_group_writable_directory_is_refused(tmp_path: Path):
    """A spool directory others could have written to is refused, naming the fix."""
    (tmp_path / "s").mkdir()
    os.chmod(tmp_path / "s", 0o770)
    with pytest.raises(SpoolError) as info:
        Spool(str(tmp_path / "s"), fsync="never")
    expected = (
        f"spool.path: {tmp_path / 's'} is writable by its group (mode 0770); another user "
        f"could have put files there (check them, then chmod 0700 {tmp_path / 's'})"
    )
    assert expected == str(info.value)


def test_a_world_writable_parent_that_is_not_sticky_is_refused(tmp_path: Path):
    """An ancestor anyone can write to, without the sticky bit, is refused."""
    (tmp_path / "open").mkdir()
    os.chmod(tmp_path / "open", 0o777)
    with pytest.raises(UnsafePathError) as info:
        opened(tmp_path / "open" / "s")
    expected = (
        f"{tmp_path / 'open'} is writable by others (mode 0777) and not sticky; another "
        "user could replace what lies below it"
    )
    assert expected == str(info.value)


def test_a_file_in_the_way_is_refused(tmp_path: Path):
    """A file where a directory should be is named."""
    (tmp_path / "f").write_text("")
    with pytest.raises(UnsafePathError) as info:
        opened(tmp_path / "f" / "s")
    assert f"{tmp_path / 'f'} is not a directory" == str(info.value)


def test_our_own_symlink_is_followed_and_its_target_checked(tmp_path: Path):
    """A symlink of ours is followed; the directory behind it is the one used."""
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    spool = Spool(str(tmp_path / "link" / "s"), fsync="never")
    spool.append([b'{"n":1}'])
    spool.close()
    assert ["00000000000000000001.seg"] == sorted(
        p.name for p in (tmp_path / "real" / "s").glob("*.seg")
    )


def test_state_directory_is_the_default_under_systemd():
    """$STATE_DIRECTORY (its first entry) is the default parent; else /var/tmp as before."""
    systemd = {"STATE_DIRECTORY": "/var/lib/events:/var/lib/other"}
    assert "/var/lib/events/main" == default_spool_path("main", systemd)
    assert legacy_spool_path("main") == default_spool_path("main", {})
    assert f"/var/tmp/baseplate-events-{os.getuid()}/main" == legacy_spool_path("main")


@pytest.mark.system
def test_a_spool_left_at_the_old_default_is_replayed(
    queue_name: str, tmp_path: Path, publisher_queue: MessageQueue,
    start_publisher: Callable[..., PublisherProcess], monkeypatch: pytest.MonkeyPatch,
):
    """Under systemd the spool moves to $STATE_DIRECTORY; events left at /var/tmp are sent."""
    old_path = legacy_spool_path(queue_name)
    old = Spool(old_path, fsync="always")
    left = [make_event(i) for i in range(3)]
    old.append(left)
    old.close()
    landed = [make_event(5)]
    put_all(publisher_queue, landed)
    ring = Landing(landing_directory(old_path), 1 << 16, QUEUE_MESSAGE_SIZE)
    assert 1 == receive(ring, publisher_queue.fileno(), 4)  # and killed before spooling it
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    try:
        with LocalCollector(SECRET, version="2j") as collector:
            publisher = start_publisher(collector, **{"spool.path": None})
            new = [make_event(10 + i) for i in range(2)]
            put_all(publisher_queue, new)
            collector.wait_for_events(6)
            assert 0 == publisher.stop()
    finally:
        ring.close()
        shutil.rmtree(old_path, ignore_errors=True)
        shutil.rmtree(landing_path(old_path), ignore_errors=True)
    assert uuids_of(left + landed + new) == collector.uuids()
    assert f"upgrade: replayed 4 events left at the old spool path {old_path}" in publisher.log()
    assert (False, False) == (os.path.exists(old_path), os.path.exists(landing_path(old_path)))
    assert (tmp_path / "state" / queue_name / "health.json").exists()


@pytest.mark.system
@needs_root
def test_a_symlink_planted_by_another_user_is_refused(queue_name: str, tmp_path: Path,
                                                      shared: Path):
    """Another user's symlink at the spool's parent: exit 2, one line, nothing touched."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    os.chmod(victim, 0o755)
    planted = shared / "baseplate-events-0"
    as_nobody("ln", "-s", str(victim), str(planted))
    result = run_refused(queue_name, tmp_path, **{"spool.path": str(planted / queue_name)})
    expected = (
        f"{PREFIX}spool.path: {planted} is a symlink owned by uid {nobody().pw_uid} (nobody), "
        "not by this user or root; refusing to follow it (remove it, or choose another path)\n"
    )
    assert (2, expected) == (result.returncode, result.stderr)
    assert ([], 0o755) == (list(victim.iterdir()), stat.S_IMODE(victim.stat().st_mode))


@pytest.mark.system
@needs_root
def test_a_directory_planted_by_another_user_is_refused(queue_name: str, tmp_path: Path,
                                                        shared: Path):
    """Another user's directory on the spool path: exit 2 with one line naming it."""
    planted = shared / "baseplate-events-0"
    as_nobody("mkdir", "-m", "0755", str(planted))
    result = run_refused(queue_name, tmp_path, **{"spool.path": str(planted / queue_name)})
    expected = (
        f"{PREFIX}spool.path: {planted} belongs to uid {nobody().pw_uid} (nobody), not to this "
        "user or root; another user could replace what lies below it\n"
    )
    assert (2, expected) == (result.returncode, result.stderr)
    assert [] == list(planted.iterdir())


@pytest.mark.system
@needs_root
def test_a_landing_symlink_planted_in_dev_shm_is_refused(queue_name: str, tmp_path: Path):
    """Another user's symlink where the landing zone goes: exit 2; the target's files stay."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "landing-ring-2048").write_bytes(b"someone else's file")
    spool_path = tmp_path / "spool"
    planted = landing_path(str(spool_path))
    as_nobody("ln", "-s", str(victim), planted)
    try:
        result = run_refused(queue_name, tmp_path)
    finally:
        os.unlink(planted)
    expected = (
        f"{PREFIX}landing zone: {planted} is a symlink owned by uid {nobody().pw_uid} "
        "(nobody), not by this user or root; refusing to follow it (remove it, or choose "
        "another path)\n"
    )
    assert (2, expected) == (result.returncode, result.stderr)
    assert b"someone else's file" == (victim / "landing-ring-2048").read_bytes()
