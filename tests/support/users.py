"""A second local user for the trust-boundary tests: a forked child setuid to a throwaway uid.

The uid has no passwd entry and no queues of its own, so its ``ulimit -q``
budget starts empty. Only root can switch users, so the tests that need one
are marked :data:`needs_root` and skip, saying why, otherwise.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import posix_ipc
import pytest

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to act as a second local user (setuid to a throwaway uid)"
)


def throwaway_uid() -> int:
    """A uid nobody uses: no passwd entry, no processes, no queues."""
    return random.randrange(3_000_000_000, 4_000_000_000)


def run_as(uid: Optional[int], gid: Optional[int], work: Callable[[], Any]) -> Any:
    """Run ``work()`` in a forked child as ``uid``/``gid`` (no other groups); return its result.

    With ``uid`` None the child keeps this process's user (for limits that
    must not outlive the test, such as a lowered ``ulimit -q``).

    The result travels back as JSON; an exception in the child fails the test
    with the child's traceback.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        status = 1
        try:
            os.close(read_end)
            if uid is not None and gid is not None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            answer = {"result": work()}
            status = 0
        except BaseException:
            answer = {"error": traceback.format_exc()}
        finally:
            with os.fdopen(write_end, "w") as out:
                json.dump(answer, out)
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as answer_file:
        text = answer_file.read()
    os.waitpid(pid, 0)
    answer = json.loads(text)
    if "error" in answer:
        raise AssertionError("the second user's child failed:\n" + answer["error"])
    return answer["result"]


def squat(full_name: str, uid: int, gid: int, mode: int) -> None:
    """As ``uid``/``gid``, pre-create queue ``full_name`` with exactly ``mode`` (umask 0)."""

    def create() -> None:
        os.umask(0)
        queue = posix_ipc.MessageQueue(
            full_name, posix_ipc.O_CREX, mode=mode, max_messages=2, max_message_size=64
        )
        queue.close()

    run_as(uid, gid, create)


@contextmanager
def mqueue_mount() -> Iterator[str]:
    """A mount of the queue file system that a throwaway uid can list (root only)."""
    if os.path.ismount("/dev/mqueue"):
        yield "/dev/mqueue"
        return
    directory = tempfile.mkdtemp(prefix="mqueue-", dir="/tmp")
    os.chmod(directory, 0o755)
    mounted = subprocess.run(
        ["mount", "-t", "mqueue", "none", directory], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        os.rmdir(directory)
        pytest.skip(f"cannot mount the mqueue file system: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", directory], check=True)
        os.rmdir(directory)
