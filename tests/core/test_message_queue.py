"""MessageQueue: the thin posix_ipc wrapper, on real kernel queues."""
from __future__ import annotations

import os
import select
import stat

import posix_ipc
import pytest

from baseplate_events.errors import (
    EventTooLargeError,
    MessageQueueError,
    QueueLimitError,
    TimedOutError,
)
from baseplate_events.mqueue.posix import MessageQueue, kernel_limits

from tests.conftest import unique_queue_name


def test_put_then_get_returns_the_same_bytes(open_queues):
    """A message comes back byte for byte."""
    queue = open_queues("/" + unique_queue_name(), 3, 64)
    queue.put(b"\x00hello\xff", timeout=0)
    assert b"\x00hello\xff" == queue.get(timeout=0)


def test_get_on_empty_queue_times_out(open_queues):
    """get(timeout=0) on an empty queue raises TimedOutError."""
    queue = open_queues("/" + unique_queue_name(), 3, 64)
    with pytest.raises(TimedOutError) as info:
        queue.get(timeout=0)
    assert "timed out waiting for the message queue" == str(info.value)


def test_get_waits_up_to_timeout(open_queues):
    """get(timeout) blocks in select() and gives up after the timeout."""
    import time

    queue = open_queues("/" + unique_queue_name(), 3, 64)
    started = time.monotonic()
    with pytest.raises(TimedOutError):
        queue.get(timeout=0.05)
    assert time.monotonic() - started >= 0.05


def test_put_on_full_queue_times_out(open_queues):
    """put(timeout=0) on a full queue raises TimedOutError and queues nothing."""
    queue = open_queues("/" + unique_queue_name(), 2, 64)
    queue.put(b"1", timeout=0)
    queue.put(b"2", timeout=0)
    with pytest.raises(TimedOutError):
        queue.put(b"3", timeout=0)
    assert 2 == queue.depth


def test_put_too_large_names_sizes(open_queues):
    """A message larger than the queue's message size raises EventTooLargeError."""
    queue = open_queues("/" + unique_queue_name(), 2, 64)
    with pytest.raises(EventTooLargeError) as info:
        queue.put(b"x" * 65, timeout=0)
    assert "event is 65 bytes; this queue takes at most 64" == str(info.value)


def test_get_many_drains_without_blocking(open_queues):
    """get_many returns what is waiting, in order, up to the limit."""
    queue = open_queues("/" + unique_queue_name(), 5, 64)
    for n in range(4):
        queue.put(str(n).encode(), timeout=0)
    assert [b"0", b"1", b"2"] == queue.get_many(3)
    assert [b"3"] == queue.get_many(10)
    assert [] == queue.get_many(10)


def test_existing_queue_keeps_its_attributes(open_queues):
    """Opening an existing queue reports its real sizes, not the ones asked for."""
    name = "/" + unique_queue_name()
    open_queues(name, 3, 100)
    again = open_queues(name, 10, 8192)
    assert (3, 100) == (again.max_messages, again.max_message_size)


def test_queue_is_selectable(open_queues):
    """fileno() works with select(): readable once a message is waiting."""
    queue = open_queues("/" + unique_queue_name(), 3, 64)
    assert ([], [], []) == select.select([queue], [], [], 0)
    queue.put(b"x", timeout=0)
    readable, _, _ = select.select([queue], [], [], 0)
    assert [queue] == readable


def test_created_with_mode_0600(open_queues):
    """New queues are private to their owner unless told otherwise."""
    name = unique_queue_name()
    queue = open_queues("/" + name, 2, 64)
    if os.path.isdir("/dev/mqueue") and os.path.exists("/dev/mqueue/" + name):
        assert 0o600 == stat.S_IMODE(os.stat("/dev/mqueue/" + name).st_mode)
    assert 0o600 == queue._queue.mode


def test_context_manager_closes(open_queues):
    """Leaving the with-block closes the descriptor; close() twice is harmless."""
    name = "/" + unique_queue_name()
    with MessageQueue(name, 2, 64) as queue:
        assert not queue.closed
    assert queue.closed
    queue.close()
    queue.unlink()


def test_unlink_removes_the_name():
    """After unlink(), the name no longer opens."""
    name = "/" + unique_queue_name()
    with MessageQueue(name, 2, 64) as queue:
        queue.unlink()
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue(name)


def test_missing_queue_without_create():
    """create=False on a missing queue says so."""
    name = "/" + unique_queue_name()
    with pytest.raises(MessageQueueError) as info:
        MessageQueue(name, 2, 64, create=False)
    assert f"message queue {name} does not exist" == str(info.value)


def test_bad_name_is_refused():
    """A queue name must be one slash and a non-empty name."""
    with pytest.raises(MessageQueueError) as info:
        MessageQueue("events/x", 2, 64)
    assert str(info.value).startswith("invalid queue name 'events/x'")


def test_bad_size_is_refused():
    """Sizes must be positive integers; the message names the argument."""
    with pytest.raises(MessageQueueError) as info:
        MessageQueue("/" + unique_queue_name(), 0, 64)
    assert "max_messages: expected a positive integer, got 0" == str(info.value)


def test_kernel_refusal_explains_limits_and_fix():
    """A queue larger than fs.mqueue allows: the error names size, limits and commands."""
    limits = kernel_limits()
    if limits["msg_max"] is None or limits["msg_max"] >= 10000:
        pytest.skip("this kernel allows 10000-message queues")
    name = "/" + unique_queue_name()
    with pytest.raises(QueueLimitError) as info:
        MessageQueue(name, 10000, 102400)
    message = str(info.value)
    assert f"cannot open message queue {name} with 10000 messages of 102400 bytes" in message
    assert f"fs.mqueue.msg_max={limits['msg_max']}" in message
    assert f"fs.mqueue.msgsize_max={limits['msgsize_max']}" in message
    assert "ulimit -q=" in message
    assert "sysctl -w fs.mqueue.msg_max=10000" in message
    assert "sysctl -w fs.mqueue.msgsize_max=102400" in message
    assert "LimitMSGQUEUE=" in message
