"""Who may use a queue: modes are exact, ours are narrowed, squatters refused.

Real queues throughout. The second local user is a forked child that
setuid's to a throwaway uid (root only: those tests skip otherwise).
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

import posix_ipc
import pytest

from baseplate_events import EventQueue
from baseplate_events.errors import QueueAccessError
from baseplate_events.mqueue.posix import MessageQueue

from tests.support.users import needs_root, squat, throwaway_uid


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, which used to turn mode 0660 into 0640."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def baseplate_queue(full_name: str) -> "posix_ipc.MessageQueue":
    """Create a queue as baseplate.py 2.7.1 does: posix_ipc directly, mode 0644."""
    return posix_ipc.MessageQueue(
        full_name, posix_ipc.O_CREAT, mode=0o644, max_messages=10, max_message_size=8192
    )


def mode_of(full_name: str) -> int:
    with MessageQueue(full_name, 1, 1, create=False, check_access=False) as queue:
        return queue.mode


def test_a_created_queue_gets_exactly_its_mode_under_umask_022(
    queue_name: str, umask_022: None
) -> None:
    """mode 0660 gives 0660 under umask 022, so the group can write."""
    with EventQueue(queue_name, max_messages=2, max_message_size=64, mode=0o660):
        assert 0o660 == mode_of("/events-" + queue_name)


def test_a_created_queue_reports_that_it_was_created(queue_name: str) -> None:
    """created is True for the open that made the queue and False for later ones."""
    with MessageQueue("/events-" + queue_name, 2, 64) as first:
        with MessageQueue("/events-" + queue_name, 2, 64) as second:
            assert (True, False) == (first.created, second.created)


def test_a_baseplate_queue_is_narrowed_to_0600_and_logged(
    queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 0644 queue of ours (baseplate.py 2.7.1) becomes 0600, with one warning line."""
    full = "/events-" + queue_name
    baseplate_queue(full).close()
    with caplog.at_level(logging.WARNING, logger="baseplate_events.queue_access"):
        EventQueue(queue_name).close()
    expected = (
        f"message queue {full} had mode 0644, more than mode = 0600 allows: "
        "changed it to 0600"
    )
    assert ([expected], 0o600) == (caplog.messages, mode_of(full))


def test_a_queue_of_todays_release_opens_silently(
    queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 0600 queue made by the previous release is used as it is, without a word."""
    full = "/events-" + queue_name
    posix_ipc.MessageQueue(
        full, posix_ipc.O_CREAT, mode=0o600, max_messages=2, max_message_size=64
    ).close()
    with caplog.at_level(logging.DEBUG, logger="baseplate_events"):
        EventQueue(queue_name).close()
    assert ([], 0o600) == (caplog.messages, mode_of(full))


def test_narrowing_is_logged_once(queue_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """The second open of a narrowed queue has nothing to change or say."""
    baseplate_queue("/events-" + queue_name).close()
    with caplog.at_level(logging.WARNING, logger="baseplate_events.queue_access"):
        EventQueue(queue_name).close()
        EventQueue(queue_name).close()
    assert 1 == len(caplog.messages)


def test_events_flow_from_baseplate_into_our_narrowed_queue(queue_name: str) -> None:
    """An app on baseplate.py keeps putting on its open descriptor after we narrow the queue."""
    full = "/events-" + queue_name
    theirs = baseplate_queue(full)
    try:
        with MessageQueue(full, 10, 8192) as ours:
            theirs.send(b'{"event": 1}')
            assert b'{"event": 1}' == ours.get(timeout=1)
    finally:
        theirs.close()


def test_our_events_reach_a_baseplate_reader(queue_name: str) -> None:
    """Our EventQueue on a baseplate-made queue delivers to a baseplate-style reader."""
    full = "/events-" + queue_name
    theirs = baseplate_queue(full)
    try:
        with EventQueue(queue_name, lambda event: event) as ours:
            ours.put(b'{"event": 2}')
        assert b'{"event": 2}' == theirs.receive(1)[0]
    finally:
        theirs.close()


def test_a_baseplate_publisher_drains_the_queue_our_app_created(queue_name: str) -> None:
    """baseplate.py's publisher opens our 0600 queue (its O_CREAT 0644 changes nothing)."""
    full = "/events-" + queue_name
    with EventQueue(queue_name, lambda event: event, max_messages=10, max_message_size=8192) as app:
        publisher = baseplate_queue(full)
        try:
            app.put(b'{"event": 3}')
            received = publisher.receive(1)[0]
        finally:
            publisher.close()
    assert (b'{"event": 3}', 0o600) == (received, mode_of(full))


def test_a_narrower_queue_of_ours_is_left_as_it_is(queue_name: str) -> None:
    """A queue with fewer bits than the mode asked for is not widened when found."""
    full = "/events-" + queue_name
    with MessageQueue(full, 2, 64, mode=0o600):
        with MessageQueue(full, 2, 64, mode=0o660):
            assert 0o600 == mode_of(full)


def squatter_message(full: str, uid: int, gid_text: str, mode: str, problem: str) -> str:
    return (
        f"refusing message queue {full}: it belongs to uid {uid}, group {gid_text}, "
        f"mode {mode}, and {problem}; whoever made it could read every event and forge "
        "new ones. Fix: remove it (as its owner or root: `baseplate-events-queue "
        f"{full[len('/events-'):]} --unlink`) and start again; to share a queue on purpose, "
        "set mode = 0660 on both sides and give the queue a group this user belongs to, "
        "with no access for others"
    )


@pytest.mark.system
@needs_root
def test_another_users_world_writable_queue_is_refused(queue_name: str) -> None:
    """A queue another user made 0666 is refused, naming owner, mode and fix."""
    full, uid = "/events-" + queue_name, throwaway_uid()
    squat(full, uid, os.getegid(), 0o666)
    with pytest.raises(QueueAccessError) as info:
        EventQueue(queue_name, max_messages=2, max_message_size=64)
    expected = squatter_message(
        full, uid, "root (gid 0)", "0666",
        "mode is 0600, which shares the queue with no group",
    )
    assert expected == str(info.value)


@pytest.mark.system
@needs_root
def test_a_group_queue_is_refused_when_our_mode_shares_nothing(queue_name: str) -> None:
    """Another user's 0660 queue in our group is refused while our mode is 0600."""
    squat("/events-" + queue_name, throwaway_uid(), os.getegid(), 0o660)
    with pytest.raises(QueueAccessError):
        EventQueue(queue_name, max_messages=2, max_message_size=64, mode=0o600)


@pytest.mark.system
@needs_root
def test_a_group_queue_of_a_group_not_ours_is_refused(queue_name: str) -> None:
    """Another user's 0660 queue whose group we are not in is refused."""
    full, uid = "/events-" + queue_name, throwaway_uid()
    squat(full, uid, uid, 0o660)
    with pytest.raises(QueueAccessError) as info:
        EventQueue(queue_name, max_messages=2, max_message_size=64, mode=0o660)
    expected = squatter_message(
        full, uid, f"gid {uid}", "0660",
        f"its group gid {uid} is not one of this user's groups",
    )
    assert expected == str(info.value)


@pytest.mark.system
@needs_root
def test_a_group_queue_open_to_others_is_refused(queue_name: str) -> None:
    """Another user's queue in our group that also lets others in (0666) is refused."""
    full, uid = "/events-" + queue_name, throwaway_uid()
    squat(full, uid, os.getegid(), 0o666)
    with pytest.raises(QueueAccessError) as info:
        EventQueue(queue_name, max_messages=2, max_message_size=64, mode=0o660)
    expected = squatter_message(
        full, uid, "root (gid 0)", "0666", "it lets every other local user in"
    )
    assert expected == str(info.value)


@pytest.mark.system
@needs_root
def test_a_queue_shared_by_group_as_configured_is_used(queue_name: str) -> None:
    """The documented deployment: another user's 0660 queue in our group, our mode 0660."""
    full = "/events-" + queue_name
    squat(full, throwaway_uid(), os.getegid(), 0o660)
    with EventQueue(queue_name, lambda event: event, mode=0o660) as queue:
        queue.put(b"shared")
        assert (b"shared", 0o660) == (queue.queue.get(timeout=1), mode_of(full))


@pytest.mark.system
@needs_root
def test_the_queue_tool_can_still_remove_a_squatted_queue(queue_name: str) -> None:
    """baseplate-events-queue NAME --unlink works on the queue the error tells you to remove."""
    from baseplate_events.mqueue.tool import main

    squat("/events-" + queue_name, throwaway_uid(), os.getegid(), 0o666)
    assert 0 == main([queue_name, "--unlink"])
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/events-" + queue_name)
