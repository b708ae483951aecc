"""The publisher's side of the queue's trust boundary, as a real process.

Queues made by baseplate.py 2.7.1 (posix_ipc directly, mode 0644) keep
working in both directions; a queue another local user planted is refused at
start-up; ``queue.mode = 0660`` means 0660 whatever the umask.
"""
from __future__ import annotations

import pytest
import os
from pathlib import Path
from typing import Callable

import posix_ipc

from baseplate_events.mqueue.posix import MessageQueue

from tests.support.collector import LocalCollector
from tests.support.publisher import (
    QUEUE_MESSAGE_SIZE,
    QUEUE_MESSAGES,
    SECRET,
    PublisherProcess,
    make_event,
    run_refused,
    uuids_of,
)
from tests.support.users import needs_root, squat, throwaway_uid

pytestmark = pytest.mark.system


def baseplate_queue(full_name: str) -> "posix_ipc.MessageQueue":
    """Open (creating if need be) a queue as baseplate.py 2.7.1 does: mode 0644."""
    return posix_ipc.MessageQueue(
        full_name,
        posix_ipc.O_CREAT,
        mode=0o644,
        max_messages=QUEUE_MESSAGES,
        max_message_size=QUEUE_MESSAGE_SIZE,
    )


def mode_of(full_name: str) -> int:
    with MessageQueue(full_name, 1, 1, create=False, check_access=False) as queue:
        return queue.mode


def test_publisher_drains_a_queue_baseplate_created(
    queue_name: str, start_publisher: Callable[..., PublisherProcess]
) -> None:
    """Events waiting in a 0644 baseplate queue are delivered; the queue is narrowed to 0600."""
    full = "/events-" + queue_name
    events = [make_event(n) for n in range(3)]
    app = baseplate_queue(full)
    try:
        for event in events:
            app.send(event)
        with LocalCollector(SECRET, version="2j") as collector:
            publisher = start_publisher(collector)
            collector.wait_for_events(3)
            app.send(make_event(3))  # the app's descriptor still works after narrowing
            collector.wait_for_events(4)
            assert 0 == publisher.stop()
    finally:
        app.close()
    narrowed = (
        f"message queue {full} had mode 0644, more than queue.mode = 0600 allows: "
        "changed it to 0600"
    )
    assert (uuids_of(events), True, 0o600) == (
        collector.uuids()[:3],
        narrowed in publisher.log(),
        mode_of(full),
    )


def test_a_baseplate_app_feeds_a_queue_the_publisher_created(
    queue_name: str, start_publisher: Callable[..., PublisherProcess]
) -> None:
    """An app still on baseplate.py opens the publisher's 0600 queue and its events arrive."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector)
        events = [make_event(n) for n in range(2)]
        app = baseplate_queue("/events-" + queue_name)
        try:
            for event in events:
                app.send(event)
        finally:
            app.close()
        collector.wait_for_events(2)
        assert 0 == publisher.stop()
    assert uuids_of(events) == collector.uuids()


def test_queue_mode_0660_is_exact_under_umask_022(
    queue_name: str, start_publisher: Callable[..., PublisherProcess]
) -> None:
    """queue.mode = 0660 creates a 0660 queue although the publisher runs under umask 022."""
    previous = os.umask(0o022)
    try:
        with LocalCollector(SECRET, version="2j") as collector:
            publisher = start_publisher(collector, **{"queue.mode": "0660"})
            created = mode_of("/events-" + queue_name)
            assert 0 == publisher.stop()
    finally:
        os.umask(previous)
    assert 0o660 == created


@needs_root
def test_publisher_refuses_a_queue_another_user_planted(queue_name: str, tmp_path: Path) -> None:
    """Another user's 0666 queue stops the publisher with status 2 and the fix."""
    full, uid = "/events-" + queue_name, throwaway_uid()
    squat(full, uid, os.getegid(), 0o666)
    result = run_refused(queue_name, tmp_path)
    expected = (
        f"baseplate-events-publisher: error: refusing message queue {full}: it belongs to "
        f"uid {uid}, group root (gid 0), mode 0666, and queue.mode is 0600, which shares "
        "the queue with no group; whoever made it could read every event and forge new "
        f"ones. Fix: remove it (as its owner or root: `baseplate-events-queue {queue_name} "
        "--unlink`) and start again; to share a queue on purpose, set queue.mode = 0660 on "
        "both sides and give the queue a group this user belongs to, with no access for "
        "others\n"
    )
    assert (2, expected) == (result.returncode, result.stderr)
