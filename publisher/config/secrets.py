"""Whether a file holding the signing secret is safe to trust, decided as OpenSSH does.

Whoever can write ``key.secret_file`` (or a config file holding
``key.secret``) can swap in a key of their own. Such a file is refused when
others can write it, or when its group can and that group is not its owner's
own private group (one whose only member is the owner, as Debian and others
give every user). A newcomer under ``umask 002`` creates 0664 files in a
shared group, so the refusal gives the ``chmod`` that fixes it.

A secret that other users can read (the file is o+r and every directory
above it o+x) is worth a warning, not a refusal: the operator may have
reasons, and the publisher would not start otherwise.
"""
from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
from typing import Optional

from baseplate_events.errors import ConfigError

__all__ = ["check_secret_file"]


def check_secret_file(key: str, path: str, info: os.stat_result) -> Optional[str]:
    """Refuse a secret file others could change; return a warning when others can read it.

    :param key: the setting that named the file, for the message.
    :param info: the ``fstat`` of the file as it was opened.
    :raises ConfigError: others, or a shared group, can write the file.
    """
    mode = stat.S_IMODE(info.st_mode)
    fix = f"chmod go-w {shlex.quote(path)}"
    if mode & stat.S_IWOTH:
        raise ConfigError(
            key,
            f"{path} holds the signing secret and every local user can write it "
            f"(mode {mode:04o}); fix it with `{fix}`",
        )
    if mode & stat.S_IWGRP and not _private_group(info.st_gid, info.st_uid):
        raise ConfigError(
            key,
            f"{path} holds the signing secret and its group {_group_name(info.st_gid)} "
            f"can write it (mode {mode:04o}); fix it with `{fix}`",
        )
    if mode & stat.S_IROTH and _others_can_reach(path):
        return (
            f"{key}: {path} holds the signing secret and every local user can read it "
            f"(mode {mode:04o}); `chmod o-r {shlex.quote(path)}` keeps it private"
        )
    return None


def _others_can_reach(path: str) -> bool:
    """Whether every directory above ``path`` lets other users through (o+x).

    A file in a private (0700) directory, as the demo writes its config, is
    out of their reach whatever its own mode.
    """
    directory = os.path.dirname(os.path.realpath(path))
    while True:
        try:
            if not os.stat(directory).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return True
        parent = os.path.dirname(directory)
        if parent == directory:
            return True
        directory = parent


def _private_group(gid: int, uid: int) -> bool:
    """Whether ``gid`` is a group whose one and only member is the user ``uid``."""
    try:
        group = grp.getgrgid(gid)
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        return False
    members = {entry.pw_name for entry in pwd.getpwall() if entry.pw_gid == gid}
    members.update(group.gr_mem)
    return members == {owner}


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
