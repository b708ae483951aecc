"""Private directories for the spool and the landing zone, safe from other local users.

The spool's default path (``/var/tmp/baseplate-events-<uid>/<queue>``) and the
landing zone's (``/dev/shm/baseplate-events-<uid>-<tag>``) sit in directories
every local user can write to, so another user can plant a symlink or a
directory of their own there first. :func:`open_private_directory` walks the
path one component at a time from ``/`` with ``openat``-style calls, never
following a symlink it has not checked, and creates what is missing (mode
0700). It accepts a component only when:

- it is owned by this user or by root (a symlink too: only then is it
  followed, and its target is walked the same way);
- it is not writable by group or others, unless it is a sticky directory
  owned by root or by this user (``/tmp``, ``/var/tmp``, ``/dev/shm``): there
  nobody else can move or replace what we own;
- the last one (the directory itself) is owned by this user; if its mode is
  not the one asked for (0700 by default), it is set to it. It may be
  writable by its group only when that mode gives the group write (a shared
  reader group, as the collector's JSONL directory allows); ``symlink=False``
  refuses it outright when it is a symlink.

Anything else is refused with a :class:`UnsafePathError` naming the path and
the problem. The caller keeps the returned descriptor and opens its files
relative to it (``dir_fd=``), so nothing can swap the directory afterwards.
"""
from __future__ import annotations

import errno
import os
import pwd
import stat
from typing import List

from baseplate_events.errors import EventError

#: Symlinks followed in one walk before giving up (the kernel's own limit).
MAX_SYMLINKS = 40


class UnsafePathError(EventError):
    """A directory for the spool or the landing zone is not private to this user."""


def owner_name(uid: int) -> str:
    """``uid 65534 (nobody)``: the number, and the name when the system knows it."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _components(path: str) -> List[str]:
    return [part for part in path.split("/") if part and part != "."]


def open_private_directory(path: str, mode: int = 0o700, symlink: bool = True) -> int:
    """Open (creating as needed) ``path`` as a directory only this user controls.

    Returns an ``O_DIRECTORY`` descriptor the caller closes.

    :param mode: the directory's mode (what is created gets it too, whatever
        the umask): 0700, or with group bits (0750, 0770, with or without
        setgid) for a group that shares it.
    :param symlink: whether the directory itself may be a symlink (owned by
        this user or root); False refuses one.

    :raises UnsafePathError: a component is a symlink or a directory owned by
        another user, is writable by others, is not a directory, or cannot be
        created or opened.
    """
    uid = os.geteuid()
    todo = _components(os.path.abspath(path))
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    walked = "/"
    links = 0
    try:
        while todo:
            name = todo.pop(0)
            last = not todo
            if name == "..":
                parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd, walked = parent, os.path.dirname(walked.rstrip("/")) or "/"
                continue
            here = os.path.join(walked, name)
            info = _lstat_or_create(fd, name, here, mode)
            if stat.S_ISLNK(info.st_mode):
                if last and not symlink:
                    raise UnsafePathError(
                        f"{here} is a symlink; refusing to follow it (give the real "
                        "directory's path instead)"
                    )
                if info.st_uid not in (0, uid):
                    raise UnsafePathError(
                        f"{here} is a symlink owned by {owner_name(info.st_uid)}, not by this "
                        "user or root; refusing to follow it (remove it, or choose another path)"
                    )
                links += 1
                if links > MAX_SYMLINKS:
                    raise UnsafePathError(f"{path}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=fd)
                todo[:0] = _components(target)
                if target.startswith("/"):
                    os.close(fd)
                    fd, walked = os.open("/", os.O_RDONLY | os.O_DIRECTORY), "/"
                continue
            if not stat.S_ISDIR(info.st_mode):
                raise UnsafePathError(f"{here} is not a directory")
            child = _open_checked(fd, name, here, info)
            os.close(fd)
            fd, walked = child, here
            _check_owner_and_mode(fd, here, uid, last, mode)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _lstat_or_create(fd: int, name: str, here: str, mode: int) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    try:
        os.mkdir(name, mode & 0o777, dir_fd=fd)
    except FileExistsError:
        pass  # made by someone else meanwhile: checked below like any other
    except OSError as exc:
        raise UnsafePathError(f"cannot create {here}: {exc.strerror}") from None
    return os.stat(name, dir_fd=fd, follow_symlinks=False)


def _open_checked(fd: int, name: str, here: str, info: os.stat_result) -> int:
    try:
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(f"{here} was replaced while being checked") from None
        raise UnsafePathError(f"cannot open {here}: {exc.strerror}") from None
    opened = os.fstat(child)
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(child)
        raise UnsafePathError(f"{here} was replaced while being checked")
    return child


def _check_owner_and_mode(fd: int, here: str, uid: int, last: bool, wanted: int) -> None:
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if last and info.st_uid != uid:
        raise UnsafePathError(
            f"{here} belongs to {owner_name(info.st_uid)}, not to this user "
            f"({owner_name(uid)}); events must not sit in a directory others control"
        )
    if info.st_uid not in (0, uid):
        raise UnsafePathError(
            f"{here} belongs to {owner_name(info.st_uid)}, not to this user or root; "
            "another user could replace what lies below it"
        )
    if mode & 0o022 and not (last and not mode & 0o002 and wanted & 0o020):
        who = "others" if mode & 0o002 else "its group"
        if last:
            raise UnsafePathError(
                f"{here} is writable by {who} (mode {mode:04o}); another user could "
                f"have put files there (check them, then chmod {wanted & 0o777:04o} {here})"
            )
        if not mode & stat.S_ISVTX:
            raise UnsafePathError(
                f"{here} is writable by {who} (mode {mode:04o}) and not sticky; another "
                "user could replace what lies below it"
            )
    if last and mode != wanted:
        os.fchmod(fd, wanted)
