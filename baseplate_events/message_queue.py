"""POSIX message queues, and nothing else.

A thin, ``select()``-able wrapper over :mod:`posix_ipc`. The web process puts
serialized events here; the publisher daemon takes them off. When the kernel
refuses to open a queue, the error says why in terms an operator can act on.
"""
from __future__ import annotations

import errno
import os
import resource
import select
import time
from types import TracebackType
from typing import List, Optional, Type

import posix_ipc

from .errors import EventTooLargeError, MessageQueueError, QueueLimitError, TimedOutError

__all__ = ["MessageQueue", "MessageQueueError", "QueueLimitError", "TimedOutError"]

DEFAULT_MODE = 0o600


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
    """The limits that decide whether a queue can be opened, as the kernel reports them."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_MSGQUEUE)
    return {
        "msg_max": _read_sysctl("msg_max"),
        "msgsize_max": _read_sysctl("msgsize_max"),
        "ulimit_q": soft,
    }


def limit_message(name: str, max_messages: int, max_message_size: int, cause: str) -> str:
    """Explain a refused ``mq_open``: the size asked for, the limits, and how to raise them."""
    limits = kernel_limits()
    total = max_messages * max_message_size
    return (
        f"cannot open message queue {name} with {max_messages} messages of "
        f"{max_message_size} bytes (about {total} bytes): {cause}. "
        f"Limits now: fs.mqueue.msg_max={_describe_limit(limits['msg_max'])}, "
        f"fs.mqueue.msgsize_max={_describe_limit(limits['msgsize_max'])}, "
        f"ulimit -q={_describe_limit(limits['ulimit_q'])} bytes. "
        f"Raise them with `sysctl -w fs.mqueue.msg_max={max_messages}` and "
        f"`sysctl -w fs.mqueue.msgsize_max={max_message_size}` (as root), and "
        f"`ulimit -q unlimited` or `LimitMSGQUEUE=infinity` in the systemd unit; "
        "or ask for a smaller queue."
    )


class MessageQueue:
    """An inter-process message queue, usable with ``select()`` via :meth:`fileno`.

    :param name: the queue's name: a slash followed by up to 254 characters,
        none of them a slash (e.g. ``/events-v2``).
    :param max_messages: capacity used if the queue has to be created.
    :param max_message_size: largest message, used if the queue has to be created.
    :param mode: permission bits if the queue has to be created (default 0600,
        so that other local users cannot read events off it).
    :param create: create the queue if it does not exist (default); otherwise
        :class:`MessageQueueError` when it is missing.

    If the queue already exists its own attributes rule, as with ``mq_open``:
    :attr:`max_messages` and :attr:`max_message_size` report the real ones.

    :raises QueueLimitError: the kernel refused the size asked for.
    """

    def __init__(
        self,
        name: str,
        max_messages: int,
        max_message_size: int,
        *,
        mode: int = DEFAULT_MODE,
        create: bool = True,
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
        try:
            self._queue = posix_ipc.MessageQueue(
                name,
                flags=posix_ipc.O_CREAT if create else 0,
                mode=mode,
                max_messages=max_messages,
                max_message_size=max_message_size,
            )
        except ValueError as exc:
            # EINVAL: more messages or bigger ones than fs.mqueue.* allow.
            raise QueueLimitError(
                errno.EINVAL, limit_message(name, max_messages, max_message_size, str(exc))
            ) from None
        except posix_ipc.ExistentialError:
            raise MessageQueueError(f"message queue {name} does not exist") from None
        except posix_ipc.PermissionsError as exc:
            raise MessageQueueError(
                f"permission denied opening message queue {name} ({exc}); it belongs to "
                "another user or was created with a narrower mode"
            ) from None
        except OSError as exc:
            # EMFILE/ENOMEM: the user's RLIMIT_MSGQUEUE (ulimit -q) is spent.
            raise QueueLimitError(
                exc.errno or errno.EMFILE,
                limit_message(name, max_messages, max_message_size, str(exc)),
            ) from None
        self._queue.block = False
        self.max_messages: int = self._queue.max_messages
        self.max_message_size: int = self._queue.max_message_size
        self._pid = os.getpid()

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
