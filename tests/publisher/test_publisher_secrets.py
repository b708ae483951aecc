"""The signing secret's files: refused when others could change them.

As OpenSSH decides: a ``key.secret_file``, or a config file holding
``key.secret``, that others can write, or whose group can and that group is not
the owner's own private group, is refused with the ``chmod`` that fixes it. A
secret file that others can read draws a warning.
"""
from __future__ import annotations

import base64
import grp
import os
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from baseplate_events.errors import ConfigError
from publisher.config.parse import load

from tests.support.collector import LocalCollector
from tests.support.publisher import (
    SECRET,
    PublisherProcess,
    run_publisher,
    write_config,
)

SECRET_B64 = base64.b64encode(b"hunter2").decode()


def secret_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET_B64 + "\n")
    path.chmod(mode)
    return path


def config_with(tmp_path: Path, mode: int = 0o600, **keys: str) -> Path:
    base = {"collector.hostname": "collector.example", "key.name": "K"}
    path = write_config(tmp_path / "publisher.ini", "q", dict(base, **keys))
    path.chmod(mode)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(str(path), "q", environ={"SECRET": SECRET_B64})
    return str(info.value)


def shared_group() -> int:
    """A group this test may give a file that is not its owner's private group, or skip."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    candidates = [g.gr_gid for g in grp.getgrall()] if os.geteuid() == 0 else os.getgroups()
    for gid in candidates:
        group = grp.getgrgid(gid)
        members = {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid} | set(group.gr_mem)
        if members != {me}:
            return gid
    pytest.skip("this user belongs to no group shared with others to give the file")


def test_a_world_writable_secret_file_is_refused(tmp_path: Path) -> None:
    """key.secret_file mode 0666: refused, with the chmod that fixes it."""
    path = secret_file(tmp_path, 0o666)
    config = config_with(tmp_path, **{"key.secret_file": str(path)})
    expected = (
        f"key.secret_file: {path} holds the signing secret and every local user can write "
        f"it (mode 0666); fix it with `chmod go-w {path}`"
    )
    assert expected == load_error(config)


def test_a_secret_file_writable_by_a_shared_group_is_refused(tmp_path: Path) -> None:
    """key.secret_file 0660 in a group with other members (umask 002's 0664): refused."""
    path = secret_file(tmp_path, 0o660)
    gid = shared_group()
    os.chown(path, -1, gid)
    config = config_with(tmp_path, **{"key.secret_file": str(path)})
    expected = (
        f"key.secret_file: {path} holds the signing secret and its group "
        f"{grp.getgrgid(gid).gr_name} can write it (mode 0660); fix it with "
        f"`chmod go-w {path}`"
    )
    assert expected == load_error(config)


def test_a_secret_file_writable_by_the_owners_private_group_is_accepted(tmp_path: Path) -> None:
    """Group-writable is fine when the group is the owner's own (only member: the owner)."""
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(me.pw_gid)
    members = {p.pw_name for p in pwd.getpwall() if p.pw_gid == me.pw_gid} | set(group.gr_mem)
    if members != {me.pw_name}:
        pytest.skip(f"group {group.gr_name} is not private to {me.pw_name}")
    path = secret_file(tmp_path, 0o660)
    os.chown(path, -1, me.pw_gid)
    config = config_with(tmp_path, **{"key.secret_file": str(path)})
    cfg = load(str(config), "q")
    assert (b"hunter2", ()) == (cfg.key.secret, cfg.warnings)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is private to its user)."""
    directory = Path(tempfile.mkdtemp(prefix="secrets-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def test_a_world_readable_secret_file_draws_a_warning(tmp_path: Path, open_dir: Path) -> None:
    """key.secret_file 0644 where others can reach it is used, with a warning saying how."""
    path = secret_file(open_dir, 0o644)
    cfg = load(str(config_with(tmp_path, **{"key.secret_file": str(path)})), "q")
    expected = (
        f"key.secret_file: {path} holds the signing secret and every local user can read "
        f"it (mode 0644); `chmod o-r {path}` keeps it private"
    )
    assert (b"hunter2", (expected,)) == (cfg.key.secret, cfg.warnings)


def test_a_readable_secret_file_in_a_private_directory_draws_no_warning(open_dir: Path) -> None:
    """A 0644 secret file inside a 0700 directory is out of others' reach: no warning."""
    private = open_dir / "private"
    private.mkdir(mode=0o700)
    path = secret_file(private, 0o644)
    cfg = load(str(config_with(open_dir, **{"key.secret_file": str(path)})), "q")
    assert (b"hunter2", ()) == (cfg.key.secret, cfg.warnings)


def test_a_world_writable_config_holding_the_secret_is_refused(tmp_path: Path) -> None:
    """A config file with key.secret in it, mode 0666: refused."""
    config = config_with(tmp_path, 0o666, **{"key.secret": SECRET_B64})
    expected = (
        f"key.secret: {config} holds the signing secret and every local user can write "
        f"it (mode 0666); fix it with `chmod go-w {config}`"
    )
    assert expected == load_error(config)


def test_a_config_taking_the_secret_from_the_environment_is_not_judged(tmp_path: Path) -> None:
    """key.secret = ${SECRET} keeps the secret out of the file: its mode is not checked."""
    config = config_with(tmp_path, 0o666, **{"key.secret": "${SECRET}"})
    cfg = load(str(config), "q", environ={"SECRET": SECRET_B64})
    assert (b"hunter2", ()) == (cfg.key.secret, cfg.warnings)


@pytest.mark.system
def test_the_publisher_exits_2_on_a_writable_secret_file(tmp_path: Path) -> None:
    """The real publisher stops at start-up with the refusal on one line."""
    path = secret_file(tmp_path, 0o666)
    config = config_with(tmp_path, **{"key.secret_file": str(path)})
    result = run_publisher("q", config)
    expected = (
        f"baseplate-events-publisher: error: key.secret_file: {path} holds the signing "
        f"secret and every local user can write it (mode 0666); fix it with "
        f"`chmod go-w {path}`\n"
    )
    assert (2, expected) == (result.returncode, result.stderr)


@pytest.mark.system
def test_the_publisher_logs_the_warning_for_a_readable_secret_file(
    open_dir: Path, publisher_for: Callable[..., PublisherProcess]
) -> None:
    """The real publisher starts with a 0644 secret file and says so once in its log."""
    path = open_dir / "secret"
    path.write_text(base64.b64encode(SECRET).decode() + "\n")
    path.chmod(0o644)
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = publisher_for(
            collector.hostname, **{"key.secret": None, "key.secret_file": str(path)}
        ).start()
        status = publisher.stop()
    expected = (
        f"WARNING key.secret_file: {path} holds the signing secret and every local user can "
        f"read it (mode 0644); `chmod o-r {path}` keeps it private\n"
    )
    assert (0, 1) == (status, publisher.log().count(expected))
