"""The spool directory, opened for one publisher: private, locked, with its ack file.

The directory is checked component by component (:mod:`publisher.paths`) and
``flock()``ed, so that two publishers never share a spool.
"""
from __future__ import annotations

import errno
import fcntl
import os
from typing import NamedTuple

from baseplate_events.errors import EventError

from publisher.paths import UnsafePathError, open_private_directory
from publisher.spool.format import Position, pack_ack


class SpoolError(EventError):
    """The spool directory cannot be used (permissions, another publisher holds it)."""


class SpoolDirectory(NamedTuple):
    """The open spool directory, its held lock file and its ack file."""

    dir_fd: int
    lock_fd: int
    ack_fd: int


def open_in(dir_fd: int, name: str, flags: int) -> int:
    """Open a file of the spool directory (never through a symlink)."""
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)


def open_spool_directory(path: str) -> SpoolDirectory:
    """Open ``path`` for this publisher alone.

    :raises SpoolError: the directory cannot be created, is not private, or is
        locked by another publisher.
    """
    try:
        dir_fd = open_private_directory(path)
    except UnsafePathError as exc:
        raise SpoolError(f"spool.path: {exc}") from None
    try:
        lock_fd = open_in(dir_fd, "lock", os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        os.close(dir_fd)
        raise SpoolError(f"spool.path: cannot open {os.path.join(path, 'lock')}: "
                         f"{exc.strerror}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(lock_fd)
        os.close(dir_fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise SpoolError(
                f"spool.path: {path} is in use by another publisher; "
                "give each publisher its own spool.path"
            ) from None
        raise
    ack_fd = open_in(dir_fd, "ack", os.O_RDWR | os.O_CREAT)
    if os.fstat(ack_fd).st_size == 0:
        # Reserve the ack's block now: a full disk must not fail an ack later.
        try:
            os.posix_fallocate(ack_fd, 0, len(pack_ack(Position(0, 0, 0))))
        except OSError:
            pass  # the first ack's write reports it, and the sender retries
    return SpoolDirectory(dir_fd, lock_fd, ack_fd)
