"""Why the kernel refused to open a queue, said in terms an operator can act on.

:class:`~baseplate_events.mqueue.posix.MessageQueue` calls these when
``mq_open`` fails. Two limits differ and need different fixes:

- ``EINVAL``: more messages or bigger ones than ``fs.mqueue.msg_max`` /
  ``fs.mqueue.msgsize_max`` allow. Fix: the sysctl, or a smaller queue.
- ``EMFILE``: the user's byte budget for queues (``ulimit -q``,
  ``RLIMIT_MSGQUEUE``) is spent, often by queues left behind by earlier runs.
  Fix: remove those, raise the budget, or ask for a smaller queue.

Each message names the setting that sizes the queue where it was opened
(:class:`QueueSettingNames`): ``events.max_messages`` in Pyramid,
``EVENTS_MAX_MESSAGES`` in Flask, ``max_queue_size`` in the publisher.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import List, NamedTuple, Optional

__all__ = [
    "EVENT_QUEUE_NAMES",
    "QueueSettingNames",
    "UserQueue",
    "budget_message",
    "kernel_limits",
    "limit_message",
    "queue_bytes",
    "tool_name",
    "user_queues",
]

#: Where Linux shows the queues of this IPC namespace, when it is mounted.
MQUEUE_DIR = "/dev/mqueue"

# What the kernel charges a queue against RLIMIT_MSGQUEUE besides its
# messages (ipc/mqueue.c, 64-bit): a pointer per message and, per priority
# in use (at most MQ_PRIO_MAX of them), a tree node of 48 bytes.
_POINTER_BYTES = 8
_TREE_NODE_BYTES = 48
_MQ_PRIO_MAX = 32768


@dataclass(frozen=True)
class QueueSettingNames:
    """How the code that opens a queue spells the settings that shape it."""

    max_messages: str
    max_message_size: str
    mode: str


#: The parameters of :class:`~baseplate_events.EventQueue` and ``MessageQueue``.
EVENT_QUEUE_NAMES = QueueSettingNames("max_messages", "max_message_size", "mode")


class UserQueue(NamedTuple):
    """One queue found in ``/dev/mqueue``."""

    #: The full name, ``/events-v2``.
    name: str
    #: Its messages' capacity and size, or None when it cannot be opened to ask.
    max_messages: Optional[int]
    max_message_size: Optional[int]
    #: Bytes of messages waiting in it now.
    waiting_bytes: int

    @property
    def charged_bytes(self) -> Optional[int]:
        """About what it costs its owner's ``ulimit -q`` budget."""
        if self.max_messages is None or self.max_message_size is None:
            return None
        return queue_bytes(self.max_messages, self.max_message_size)


def _read_sysctl(name: str) -> Optional[int]:
    try:
        with open("/proc/sys/fs/mqueue/" + name) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _describe_limit(value: Optional[int]) -> str:
    if value is None:
        return "unknown"
    if value == resource.RLIM_INFINITY:
        return "unlimited"
    return str(value)


def kernel_limits() -> dict:
    """The limits that decide whether a queue can be opened, as the kernel reports them.

    A value the platform does not have (macOS has no ``RLIMIT_MSGQUEUE`` and
    no ``/proc``) is None.
    """
    rlimit = getattr(resource, "RLIMIT_MSGQUEUE", None)
    soft = resource.getrlimit(rlimit)[0] if rlimit is not None else None
    return {
        "msg_max": _read_sysctl("msg_max"),
        "msgsize_max": _read_sysctl("msgsize_max"),
        "ulimit_q": soft,
    }


def queue_bytes(max_messages: int, max_message_size: int) -> int:
    """About what a queue of this size costs against ``ulimit -q``."""
    overhead = max_messages * _POINTER_BYTES + min(max_messages, _MQ_PRIO_MAX) * _TREE_NODE_BYTES
    return max_messages * max_message_size + overhead


def _smaller(names: QueueSettingNames) -> str:
    return f"ask for a smaller queue with {names.max_messages} and {names.max_message_size}"


def _opening(name: str, max_messages: int, max_message_size: int) -> str:
    return (
        f"cannot open message queue {name} with {max_messages} messages of "
        f"{max_message_size} bytes (about {queue_bytes(max_messages, max_message_size)} bytes)"
    )


def limit_message(
    name: str,
    max_messages: int,
    max_message_size: int,
    cause: str,
    names: QueueSettingNames = EVENT_QUEUE_NAMES,
) -> str:
    """Explain an ``EINVAL`` from ``mq_open``: the size asked for, the limits, and the fixes."""
    limits = kernel_limits()
    return (
        f"{_opening(name, max_messages, max_message_size)}: {cause}. "
        f"Limits now: fs.mqueue.msg_max={_describe_limit(limits['msg_max'])}, "
        f"fs.mqueue.msgsize_max={_describe_limit(limits['msgsize_max'])}, "
        f"ulimit -q={_describe_limit(limits['ulimit_q'])} bytes. "
        f"Raise them with `sysctl -w fs.mqueue.msg_max={max_messages}` and "
        f"`sysctl -w fs.mqueue.msgsize_max={max_message_size}` (as root), and "
        "`ulimit -q unlimited` or `LimitMSGQUEUE=infinity` in the systemd unit; "
        f"or {_smaller(names)}."
    )


def budget_message(
    name: str,
    max_messages: int,
    max_message_size: int,
    cause: str,
    names: QueueSettingNames = EVENT_QUEUE_NAMES,
) -> str:
    """Explain an ``EMFILE``/``ENOMEM``: the user's ``ulimit -q`` budget and who spent it."""
    budget = kernel_limits()["ulimit_q"]
    needed = queue_bytes(max_messages, max_message_size)
    raise_it = (
        "raise the budget with `ulimit -q unlimited` in the shell that starts it or "
        "`LimitMSGQUEUE=infinity` in the systemd unit"
    )
    opening = f"{_opening(name, max_messages, max_message_size)}: {cause}. "
    if budget is not None and budget != resource.RLIM_INFINITY and needed > budget:
        return (
            opening
            + f"This queue alone needs more than this user's budget for queues "
            f"(ulimit -q={budget} bytes): {raise_it}, or {_smaller(names)}."
        )
    return (
        opening
        + f"This user's budget for queues (ulimit -q={_describe_limit(budget)} bytes) "
        f"is spent by the queues it already has: {_describe_user_queues()}. "
        "Remove the ones left over with `baseplate-events-queue NAME --unlink`, "
        f"{raise_it}, or {_smaller(names)}. (EMFILE can also mean that this process "
        "has as many descriptors open as `ulimit -n` allows.)"
    )


def _describe_user_queues() -> str:
    if not os.path.isdir(MQUEUE_DIR) or not os.path.ismount(MQUEUE_DIR):
        return (
            f"to list them, mount the queue file system: `mount -t mqueue none {MQUEUE_DIR}` "
            f"(as root), then `ls -l {MQUEUE_DIR}`"
        )
    queues = user_queues()
    if not queues:
        return f"none of them is visible in {MQUEUE_DIR} (another IPC namespace holds them)"
    parts = []
    for queue in queues:
        charged = queue.charged_bytes
        if charged is None:
            size = "size unknown"
        else:
            size = f"{queue.max_messages} x {queue.max_message_size} bytes, about {charged} bytes"
        parts.append(f"{tool_name(queue.name)} ({size}, {queue.waiting_bytes} bytes waiting)")
    return ", ".join(parts)


def tool_name(full_name: str) -> str:
    """What ``baseplate-events-queue NAME`` takes for a queue: ``v2`` for ``/events-v2``."""
    prefix = "/events-"
    return full_name[len(prefix) :] if full_name.startswith(prefix) else full_name


def user_queues(uid: Optional[int] = None) -> List[UserQueue]:
    """The queues in ``/dev/mqueue`` owned by ``uid`` (default: this process's user), by name."""
    import posix_ipc

    owner = os.geteuid() if uid is None else uid
    found = []
    try:
        entries = sorted(os.listdir(MQUEUE_DIR))
    except OSError:
        return []
    for entry in entries:
        path = os.path.join(MQUEUE_DIR, entry)
        try:
            if os.lstat(path).st_uid != owner:
                continue
            with open(path) as f:
                waiting = _qsize(f.read())
        except OSError:
            continue
        max_messages = max_message_size = None
        try:
            # Opening an existing queue costs nothing against the budget.
            queue = posix_ipc.MessageQueue("/" + entry, read=True, write=False)
        except (posix_ipc.Error, OSError, ValueError):
            pass
        else:
            max_messages, max_message_size = queue.max_messages, queue.max_message_size
            queue.close()
        found.append(UserQueue("/" + entry, max_messages, max_message_size, waiting))
    return found


def _qsize(text: str) -> int:
    # The file reads "QSIZE:129 NOTIFY:0 SIGNO:0 NOTIFY_PID:0".
    for field in text.split():
        key, _, value = field.partition(":")
        if key == "QSIZE" and value.isdigit():
            return int(value)
    return 0
