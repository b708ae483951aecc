"""Who may use a queue: the check made on every queue right after it is opened.

The queue is the trust boundary between the apps and the publisher: whoever
can read it sees every event, and whoever can write it forges them. Another
local user who pre-creates ``/events-NAME`` with mode 0666 would get both,
so :func:`check_queue_access` looks at the open descriptor (``fstat``: no
race with the name) and decides:

- owned by this user with more permission bits than the configured mode (as
  baseplate.py's 0644 queues are): narrowed with ``fchmod`` and logged once.
  Old queues keep working.
- owned by another user: accepted only for a deliberate group deployment:
  the configured mode gives the group access, the queue's group is one of
  ours, and it grants nothing to others. Anything else is refused with
  :class:`~baseplate_events.errors.QueueAccessError`.
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
from typing import Optional

from ..errors import QueueAccessError
from .limits import QueueSettingNames, tool_name

__all__ = ["access_problem", "check_queue_access", "set_mode"]

logger = logging.getLogger("baseplate_events.queue_access")


def set_mode(fd: int, mode: int) -> None:
    """Give a queue we just created exactly ``mode``, whatever the umask took away."""
    if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
        os.fchmod(fd, mode)


def check_queue_access(fd: int, name: str, mode: int, names: QueueSettingNames) -> None:
    """Make sure nobody but us (and, by configuration, our group) can use the queue.

    :raises QueueAccessError: the queue belongs to another user and is not
        shared with us the way the configured mode allows.
    """
    problem = access_problem(fd, name, mode, names)
    if problem is not None:
        raise QueueAccessError(problem)
    info = os.fstat(fd)
    found = stat.S_IMODE(info.st_mode)
    if info.st_uid == os.geteuid() and found & ~mode:
        os.fchmod(fd, mode)
        logger.warning(
            "message queue %s had mode %04o, more than %s = %04o allows: changed it to %04o",
            name,
            found,
            names.mode,
            mode,
            mode,
        )


def access_problem(fd: int, name: str, mode: int, names: QueueSettingNames) -> Optional[str]:
    """Why :func:`check_queue_access` would refuse the queue, or None; changes nothing."""
    info = os.fstat(fd)
    found = stat.S_IMODE(info.st_mode)
    if info.st_uid == os.geteuid():
        return None
    if not mode & 0o070:
        problem = f"{names.mode} is {mode:04o}, which shares the queue with no group"
    elif info.st_gid not in _our_groups():
        problem = f"its group {_group(info.st_gid)} is not one of this user's groups"
    elif found & 0o007:
        problem = "it lets every other local user in"
    else:
        return None
    return (
        f"refusing message queue {name}: it belongs to {_user(info.st_uid)}, group "
        f"{_group(info.st_gid)}, mode {found:04o}, and {problem}; whoever made it could "
        "read every event and forge new ones. Fix: remove it (as its owner or root: "
        f"`baseplate-events-queue {tool_name(name)} --unlink`) and start again; to share a "
        f"queue on purpose, set {names.mode} = 0660 on both sides and give the queue a "
        "group this user belongs to, with no access for others"
    )


def _our_groups() -> "set[int]":
    return {os.getegid(), *os.getgroups()}


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"
