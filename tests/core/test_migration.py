"""docs/migration.rst's facts about the queue, checked with the call baseplate.py makes.

baseplate.py (0.30 and 2.7.1 alike) opens ``/events-NAME`` with posix_ipc,
``O_CREAT``, mode 0644, 10000 messages of 102400 bytes. Its own code is not
installed here; these tests make the same call.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import posix_ipc
import pytest

from tests.conftest import unique_queue_name

BASEPLATE_MESSAGES, BASEPLATE_MESSAGE_SIZE = 10000, 102400


def _baseplates_open(name: str) -> posix_ipc.MessageQueue:
    return posix_ipc.MessageQueue(f"/events-{name}", flags=posix_ipc.O_CREAT, mode=0o644,
                                  max_messages=BASEPLATE_MESSAGES,
                                  max_message_size=BASEPLATE_MESSAGE_SIZE)


def _limit(name: str) -> int:
    return int(Path(f"/proc/sys/fs/mqueue/{name}").read_text())


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = unique_queue_name("mig")
    yield name
    try:
        posix_ipc.unlink_message_queue(f"/events-{name}")
    except posix_ipc.ExistentialError:
        pass


@pytest.mark.system  # runs the queue tool
def test_baseplates_open_takes_a_queue_our_tool_created_at_its_own_size(queue_name: str) -> None:
    """After baseplate-events-queue NAME --create, baseplate.py's open works, at 10 x 8192."""
    made = subprocess.run([str(Path(sys.executable).parent / "baseplate-events-queue"),
                           queue_name, "--create"], capture_output=True, text=True, timeout=30)
    assert 0 == made.returncode, made.stderr
    queue = _baseplates_open(queue_name)
    try:
        assert (10, 8192) == (queue.max_messages, queue.max_message_size)
    finally:
        queue.close()


def test_baseplates_open_cannot_create_the_queue_on_a_stock_kernel(queue_name: str) -> None:
    """With the kernel's default limits, baseplate.py's own open of a missing queue fails."""
    budget = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
    over_budget = budget != resource.RLIM_INFINITY and budget < (
        BASEPLATE_MESSAGES * BASEPLATE_MESSAGE_SIZE)
    over_limits = os.geteuid() != 0 and (_limit("msgsize_max") < BASEPLATE_MESSAGE_SIZE
                                         or _limit("msg_max") < BASEPLATE_MESSAGES)
    if not (over_budget or over_limits):
        pytest.skip("this process may create a 10000 x 102400 queue (ulimit -q unlimited as "
                    "root, or raised limits): the docs' claim is about a stock kernel")
    with pytest.raises((ValueError, OSError)):
        _baseplates_open(queue_name).close()
