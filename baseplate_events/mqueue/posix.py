"""POSIX message queues, and nothing else.

A thin, ``select()``-able wrapper over :mod:`posix_ipc`. The web process puts
serialized events here; the publisher daemon takes them off. When the kernel
refuses to open a queue, the error says why in terms an operator can act on
(:mod:`baseplate_events.mqueue.limits`). A queue this opens gets exactly its
mode if it made it, and is checked for who else may use it if it found it
(:mod:`baseplate_events.mqueue.access`).
"""
from __future__ import annotations

import errno
import os
import select
import stat
import time
from types import TracebackType
from typing import List, Optional, Type

import posix_ipc

from ..errors import (
    EventTooLargeError,
    MessageQueueError,
    QueueLimitError,
    QueuesUnsupportedError,
    TimedOutError,
)
from .access import access_problem, check_queue_access, set_mode
from .limits import (
    EVENT_QUEUE_NAMES,
    QueueSettingNames,
    budget_message,
    kernel_limits,
    limit_message,
)

__all__ = [
    "MessageQueue",
    "MessageQueueError",
    "QueueLimitError",
    "TimedOutError",
    "kernel_limits",
    "queues_supported",
]

DEFAULT_MODE = 0o600

# An open that loses the race with another process unlinking the queue tries again.
_OPEN_ATTEMPTS = 3


def _errno_of(exc: BaseException) -> int:
    """The errno of a failed mq_open, also where posix_ipc replaced it with a sentence."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, MemoryError):
        return errno.ENOMEM
    text = str(exc)
    if "maximum number of files open" in text:
        return errno.EMFILE
    if "total number of open files" in text:
        return errno.ENFILE
    return errno.EIO


def queues_supported() -> bool:
    """Whether this platform has POSIX message queues (posix_ipc on macOS has none)."""
    return bool(getattr(posix_ipc, "MESSAGE_QUEUES_SUPPORTED", True)) and hasattr(
        posix_ipc, "MessageQueue"
    )


class MessageQueue:
    """An inter-process message queue, usable with ``select()`` via :meth:`fileno`.

    :param name: the queue's name: a slash followed by up to 254 characters,
        none of them a slash (e.g. ``/events-v2``).
    :param max_messages: capacity used if the queue has to be created.
    :param max_message_size: largest message, used if the queue has to be created.
    :param mode: the queue's permission bits (default 0600, so that other
        local users cannot read events off it). A queue this call creates gets
        exactly these, whatever the umask; see ``check_access`` for one it finds.
    :param create: create the queue if it does not exist (default); otherwise
        :class:`MessageQueueError` when it is missing.
    :param check_access: check a queue that already exists
        (:mod:`baseplate_events.mqueue.access`): narrow our own to ``mode``,
        refuse another user's unless it is shared by group as ``mode`` allows.
        Only tools that inspect or remove queues turn this off.
    :param setting_names: how the caller's configuration spells the size and
        mode settings, so that error messages name the setting to change.

    If the queue already exists its own attributes rule, as with ``mq_open``:
    :attr:`max_messages` and :attr:`max_message_size` report the real ones.

    :raises QueueLimitError: the kernel refused the size asked for, or this
        user's ``ulimit -q`` budget is spent; the message says which and why.
    :raises QueueAccessError: another user's queue, not shared with us.
    :raises QueuesUnsupportedError: the platform has no POSIX message queues.
    """

    def __init__(
        self,
        name: str,
        max_messages: int,
        max_message_size: int,
        *,
        mode: int = DEFAULT_MODE,
        create: bool = True,
        check_access: bool = True,
        setting_names: QueueSettingNames = EVENT_QUEUE_NAMES,
    ) -> None:
        self.name = name
        if not name.startswith("/") or "/" in name[1:] or len(name) < 2 or len(name) > 255:
            raise MessageQueueError(
                f"invalid queue name {name!r}: it must be a slash followed by 1 to 254 "
                "characters, none of them a slash"
            )
        sizes = (("max_messages", max_messages), ("max_message_size", max_message_size))
        for label, value in sizes:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MessageQueueError(f"{label}: expected a positive integer, got {value!r}")
        if not queues_supported():
            raise QueuesUnsupportedError(name)
        #: Whether this open created the queue (it did not exist before).
        self.created = False
        try:
            self._queue = self._open(name, max_messages, max_message_size, mode, create)
        except ValueError as exc:
            # EINVAL: more messages or bigger ones than fs.mqueue.* allow.
            raise QueueLimitError(
                errno.EINVAL,
                limit_message(name, max_messages, max_message_size, str(exc), setting_names),
            ) from None
        except posix_ipc.ExistentialError:
            raise MessageQueueError(f"message queue {name} does not exist") from None
        except posix_ipc.PermissionsError as exc:
            raise MessageQueueError(
                f"permission denied opening message queue {name} ({exc}); it belongs to "
                "another user or was created with a narrower mode"
            ) from None
        except (OSError, MemoryError) as exc:
            # posix_ipc turns EMFILE into an OSError without errno, whose text
            # ("the maximum number of files open") misleads: for mq_open it
            # mostly means the user's RLIMIT_MSGQUEUE (ulimit -q) is spent.
            code = _errno_of(exc)
            if code == errno.EMFILE:
                cause = "the kernel answered EMFILE"
                explain = budget_message
            else:
                cause = str(exc)
                explain = limit_message
            raise QueueLimitError(
                code, explain(name, max_messages, max_message_size, cause, setting_names)
            ) from None
        try:
            if self.created:
                set_mode(self._queue.mqd, mode)
            elif check_access:
                check_queue_access(self._queue.mqd, name, mode, setting_names)
        except BaseException:
            self._queue.close()
            raise
        self._queue.block = False
        self.max_messages: int = self._queue.max_messages
        self.max_message_size: int = self._queue.max_message_size
        self._pid = os.getpid()

    def _open(
        self, name: str, max_messages: int, max_message_size: int, mode: int, create: bool
    ) -> "posix_ipc.MessageQueue":
        if not create:
            return posix_ipc.MessageQueue(name, flags=0)
        # O_EXCL first, so that we know whether we made it: a queue we made
        # gets exactly ``mode`` (the umask narrows mq_open's), one we found
        # gets checked for who else can use it.
        for _ in range(_OPEN_ATTEMPTS - 1):
            try:
                queue = posix_ipc.MessageQueue(
                    name,
                    flags=posix_ipc.O_CREX,
                    mode=mode,
                    max_messages=max_messages,
                    max_message_size=max_message_size,
                )
            except posix_ipc.ExistentialError:
                pass
            else:
                self.created = True
                return queue
            try:
                return posix_ipc.MessageQueue(name, flags=0)
            except posix_ipc.ExistentialError:
                continue  # unlinked between the two calls
        return posix_ipc.MessageQueue(name, flags=0)

    # -- reading --------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> bytes:
        """Take one message off the queue.

        :param timeout: seconds to wait while the queue is empty; ``None`` waits
            for ever, ``0`` does not wait.
        :raises TimedOutError: the queue stayed empty for ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        receive = self._queue.receive
        while True:
            try:
                return receive()[0]
            except posix_ipc.BusyError:
                pass
            except posix_ipc.SignalError:
                continue
            if not self._wait(deadline, readable=True):
                raise TimedOutError()

    def get_many(self, limit: int) -> List[bytes]:
        """Take up to ``limit`` messages that are already waiting; never blocks."""
        receive = self._queue.receive
        out: List[bytes] = []
        append = out.append
        try:
            for _ in range(limit):
                append(receive()[0])
        except posix_ipc.BusyError:
            pass
        except posix_ipc.SignalError:
            pass
        return out

    # -- writing --------------------------------------------------------------

    def put(self, message: bytes, timeout: Optional[float] = None) -> None:
        """Add a message to the queue.

        :param timeout: seconds to wait while the queue is full; ``None`` waits
            for ever, ``0`` does not wait.
        :raises EventTooLargeError: the message exceeds :attr:`max_message_size`.
        :raises TimedOutError: the queue stayed full for ``timeout`` seconds.
        """
        # Fast path: one non-blocking mq_send, no locals, no loop set-up.
        try:
            return self._queue.send(message)  # type: ignore[no-any-return]
        except posix_ipc.BusyError:
            if timeout == 0:
                raise TimedOutError() from None
        except posix_ipc.SignalError:
            pass
        except ValueError:
            raise EventTooLargeError(len(message), self.max_message_size) from None
        send = self._queue.send
        deadline: Optional[float] = None
        while True:
            try:
                send(message)
                return
            except posix_ipc.BusyError:
                pass
            except posix_ipc.SignalError:
                continue
            except ValueError:
                raise EventTooLargeError(len(message), self.max_message_size) from None
            if timeout is not None and deadline is None:
                deadline = time.monotonic() + timeout
            if not self._wait(deadline, readable=False):
                raise TimedOutError()

    def _wait(self, deadline: Optional[float], readable: bool) -> bool:
        """Sleep in select() until the queue may be ready; False once the deadline passed."""
        if deadline is None:
            remaining = None
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
        fd = self._queue.mqd
        try:
            if readable:
                select.select([fd], [], [], remaining)
            else:
                select.select([], [fd], [], remaining)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            pass
        return True

    # -- housekeeping ----------------------------------------------------------

    @property
    def depth(self) -> int:
        """How many messages are waiting now."""
        return int(self._queue.current_messages)

    def access_problem(self, mode: int, setting_names: QueueSettingNames) -> Optional[str]:
        """Why an open with ``mode`` would refuse this queue (another user's), or None."""
        return access_problem(self._queue.mqd, self.name, mode, setting_names)

    @property
    def mode(self) -> int:
        """The queue's permission bits now."""
        return stat.S_IMODE(os.fstat(self._queue.mqd).st_mode)

    def fileno(self) -> int:
        """The queue descriptor, for ``select()``/``poll()``."""
        return int(self._queue.mqd)

    def close(self) -> None:
        """Close this process's descriptor (idempotent). Unlinking does not do this."""
        queue = getattr(self, "_queue", None)
        if queue is not None and queue.mqd != -1:
            queue.close()

    def unlink(self) -> None:
        """Remove the queue's name; it disappears once every descriptor is closed."""
        try:
            self._queue.unlink()
        except posix_ipc.ExistentialError:
            pass

    @property
    def closed(self) -> bool:
        return bool(self._queue.mqd == -1)

    def __enter__(self) -> "MessageQueue":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<MessageQueue {self.name} max_messages={self.max_messages} "
            f"max_message_size={self.max_message_size}>"
        )
