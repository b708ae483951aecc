"""The landing zone: ``mq_receive`` writes each event straight into a file-backed page.

Taking a message off a POSIX queue and writing it to the spool cannot be one
atomic step: between them the event exists only in the publisher's memory,
and a ``kill -9`` there would lose it. So the intake loop receives into a small
``mmap``-ed file (``MAP_SHARED``): the moment ``mq_receive`` returns, the bytes
are in the page cache, which outlives the process. Events collect there for a
few milliseconds and are then appended to the spool together, and the ring is
zeroed. On start, whatever is still in a landing file is appended to the spool
first (at-least-once: it may be there already).

The file is a ring of records from offset 0: an 8-byte little-endian word
(the event's length with the top bit set), then the event; each record starts
at a multiple of 8. A message is received only where a whole ``msgsize`` still
fits. Past the last record the file is all zeros, so if the process died
between ``mq_receive`` and writing the length word, the event is recovered
from the data: it is JSON and never ends in a NUL byte.

The two per-event loops (receive into the ring, gather it into a spool
record) are in C (``publisher/_landing.c``) when the extension was built, else
in Python here through ``ctypes`` on ``mq_timedreceive``; the tests run both.
Where neither works the intake loop falls back to :meth:`MessageQueue.get_many`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import mmap
import os
import select
import stat
import struct
import time
import zlib
from typing import Any, List, NamedTuple, Optional, Tuple

from publisher.paths import UnsafePathError, open_private_directory
from publisher.spool.framing import join_events
from publisher.spool.store import SpoolError

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.landing")

_LENGTH = struct.Struct("<Q")
_FULL = 1 << 63
_PREFIX = "landing-ring-"

try:
    from publisher import _landing as _accelerated
except ImportError:  # pragma: no cover - depends on the build
    _accelerated = None  # type: ignore[assignment]


class LandingError(SpoolError):
    """The landing zone's directory is not private to this user."""


class Gathered(NamedTuple):
    """The ring's events as one spool record, and where gathering stopped."""

    joined: bytes
    lengths: bytes
    #: Ring offset after the last whole record: the ring's end, unless a word
    #: there was damaged (another process wrote to the file).
    stop: int

    @property
    def event_count(self) -> int:
        return len(self.lengths) // 4


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_receive() -> Optional["ctypes._NamedFuncPointer"]:
    for name in (ctypes.util.find_library("rt"), ctypes.util.find_library("c")):
        if not name:
            continue
        try:
            # PyDLL keeps the GIL through the call: it never blocks (the timeout is in
            # the past), and releasing the GIL per message invites a handoff to the
            # sender thread on every event.
            function = ctypes.PyDLL(name, use_errno=True).mq_timedreceive
        except (OSError, AttributeError):
            continue
        # No argtypes: every argument is passed as a ready-made ctypes object, which
        # skips the per-call conversions (measured: 0.6 µs of 2.4 per message).
        function.restype = ctypes.c_ssize_t
        return function
    return None


def landing_path(spool_path: str) -> str:
    """The landing directory a spool would use in /dev/shm (not created nor checked)."""
    tag = f"{zlib.crc32(os.path.realpath(spool_path).encode()):08x}"
    return os.path.join("/dev/shm", f"baseplate-events-{os.getuid()}-{tag}")


def landing_directory(spool_path: str) -> str:
    """Where the landing zone of a spool lives: RAM-backed if the system has /dev/shm.

    Files there survive the process (a ``kill -9``) but not a reboot, and cost no
    disk writeback. One private directory per spool, created and checked like
    the spool's (see :mod:`publisher.paths`); without /dev/shm, the spool
    directory itself.

    :raises LandingError: the directory in /dev/shm is a symlink, or belongs to
        or is writable by another user.
    """
    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)):
        return spool_path
    path = landing_path(spool_path)
    try:
        os.close(open_private_directory(path))
    except UnsafePathError as exc:
        raise LandingError(f"landing zone: {exc}") from None
    return path


def landing_name(msgsize: int) -> str:
    return f"{_PREFIX}{msgsize}"


def collect_leftovers(directory: str) -> List[bytes]:
    """Events left in any landing file of ``directory``, in order.

    Call before opening a :class:`Landing` there; the caller spools what this
    returns, then calls :func:`remove_landings`. A ring damaged by another
    process is read up to the damage, which is logged.
    """
    out: List[bytes] = []
    for name in sorted(os.listdir(directory)):
        msgsize = name[len(_PREFIX) :]
        if not name.startswith(_PREFIX) or not (msgsize.isascii() and msgsize.isdigit()):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            logger.warning("landing: skipping %s: %s", path, exc.strerror)
            continue
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            logger.warning("landing: skipping %s: not a regular file", path)
            continue
        with open(fd, "rb") as f:
            data = f.read()
        events, damaged = _scan(data, int(msgsize))
        if damaged is not None:
            logger.error("landing: %s is damaged at offset %d (a length word past the end of "
                         "the file); recovered the %d events before it, the rest is lost",
                         path, damaged, len(events))
        out.extend(events)
    return out


def remove_landings(directory: str) -> None:
    for name in os.listdir(directory):
        if name.startswith("landing-"):
            try:
                os.unlink(os.path.join(directory, name))
            except IsADirectoryError:
                logger.warning("landing: leaving %s: a directory, not a landing file",
                               os.path.join(directory, name))


def scan(data: bytes, msgsize: int) -> List[bytes]:
    """The events in a landing ring, including one whose length word was never written.

    Stops at the first word without the "full" bit. A word of zero may hide an
    event received just before a crash (its length word not yet written): it
    counts only if it is whole JSON, so that the remains of a ring half zeroed
    by :meth:`Landing.clear` are never taken for an event.
    """
    return _scan(data, msgsize)[0]


def _scan(data: bytes, msgsize: int) -> Tuple[List[bytes], Optional[int]]:
    """:func:`scan`, and the offset of a length word that runs past the data (damage)."""
    out: List[bytes] = []
    offset = 0
    while offset + 8 <= len(data):
        (word,) = _LENGTH.unpack_from(data, offset)
        if word & _FULL:
            length = word & ~_FULL
            if offset + 8 + length > len(data):
                return out, offset  # not a record of ours: damaged, or the file cut short
            out.append(data[offset + 8 : offset + 8 + length])
            offset = (offset + 8 + length + 7) & ~7
            continue
        if word == 0:
            event = data[offset + 8 : offset + 8 + msgsize].rstrip(b"\0")
            if event and _is_json(event):
                out.append(event)  # the process died between mq_receive and the length word
        break  # past the last record
    return out, None


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return False
    return True


class _Receiver:
    """The ctypes twin of ``_landing.receive_into`` and ``_landing.gather``, same semantics."""

    def __init__(self) -> None:
        function = _load_receive()
        if function is None:
            raise OSError(errno.ENOSYS, "mq_timedreceive is not available through ctypes")
        self._receive = function
        self._past = ctypes.byref(_Timespec(0, 0))  # an absolute time long gone: never wait
        self._pointer = ctypes.c_void_p()

    def receive_into(self, mqd: int, ring: Any, offset: int, msgsize: int, limit: int, wake_fd: int,
              timeout: float, linger: float, until: int) -> Tuple[int, int, int]:
        receive, past, pointer = self._receive, self._past, self._pointer
        anchor = ctypes.c_char.from_buffer(ring)
        try:
            base = ctypes.addressof(anchor)
            queue, size = ctypes.c_int(mqd), ctypes.c_size_t(msgsize)
            pack = _LENGTH.pack_into
            count = 0
            was_empty = offset == 0
            deadline = time.monotonic() + timeout
            watch = [mqd] if wake_fd < 0 else [mqd, wake_fd]
            while True:
                stop = False
                while count < limit and offset < until and offset + 8 + msgsize <= len(ring):
                    pointer.value = base + offset + 8
                    got = receive(queue, pointer, size, None, past)
                    if got < 0:
                        err = ctypes.get_errno()
                        if err == errno.EINTR:
                            stop = True
                        elif err not in (errno.EAGAIN, errno.ETIMEDOUT):
                            if not count:
                                raise OSError(err, os.strerror(err))
                            stop = True  # report what was taken; the error recurs next call
                        break
                    pack(ring, offset, got | _FULL)
                    offset = (offset + 8 + got + 7) & ~7
                    count += 1
                    if count == 1 and was_empty:
                        deadline = min(deadline, time.monotonic() + linger)
                if stop or count >= limit or offset >= until or offset + 8 + msgsize > len(ring):
                    return offset, count, 0
                left = deadline - time.monotonic()
                if left <= 0:
                    return offset, count, 0
                try:
                    ready, _, _ = select.select(watch, [], [], left)
                except InterruptedError:  # pragma: no cover - Python retries select itself
                    return offset, count, 0
                if wake_fd in ready:
                    return offset, count, 1
        finally:
            del anchor

    @staticmethod
    def gather(ring: Any, end: int) -> Tuple[bytes, bytes, int]:
        if not 0 <= end <= len(ring):
            raise ValueError("end is outside the ring")
        data = bytes(ring[:end])  # one copy: every word is read once, from it
        events: List[bytes] = []
        offset = 0
        while end - offset >= 8:
            (word,) = _LENGTH.unpack_from(data, offset)
            length = word & ~_FULL
            if not word & _FULL or length > end - offset - 8:
                break
            events.append(data[offset + 8 : offset + 8 + length])
            offset = (offset + 8 + length + 7) & ~7
        joined, lengths = join_events(events)
        return joined, lengths.tobytes(), min(offset, end)


def receiver(kind: str = "auto") -> Any:
    """The receive/gather implementation: ``"c"``, ``"ctypes"`` or ``"auto"`` (C if built)."""
    if kind == "c" or (kind == "auto" and _accelerated is not None):
        if _accelerated is None:
            raise OSError(errno.ENOSYS, "the C extension publisher._landing is not built")
        return _accelerated
    return _Receiver()


class Landing:
    """A ring of ``size`` bytes in ``directory`` for messages of up to ``msgsize`` bytes.

    Open it only after :func:`collect_leftovers` has been spooled: it starts empty.
    ``kind`` picks the implementation (see :func:`receiver`).
    """

    def __init__(self, directory: str, size: int, msgsize: int, kind: str = "auto") -> None:
        self._impl = receiver(kind)
        self.path = os.path.join(directory, landing_name(msgsize))
        self.msgsize = msgsize
        size = max(size, 8 + msgsize + 7) & ~7
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
            # Reserve the pages now: a full tmpfs must fail here (we fall back), not
            # with SIGBUS on the first write through the mapping.
            os.posix_fallocate(fd, 0, size)
            self.buf = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._zeros = bytes(size)
        #: Bytes of the ring in use, and how many events they hold.
        self.end = 0
        self.count = 0

    @property
    def full(self) -> bool:
        """No room for one more message."""
        return self.end + 8 + self.msgsize > len(self.buf)

    def fill(self, mqd: int, limit: int, wake_fd: int, timeout: float, linger: float,
             until: int) -> bool:
        """Take messages and wait for more, with the GIL released; see ``_landing.c``.

        Returns whether ``wake_fd`` became readable (a signal arrived).
        """
        self.end, got, woken = self._impl.receive_into(mqd, self.buf, self.end, self.msgsize,
                                                       limit, wake_fd, timeout, linger, until)
        self.count += got
        return bool(woken)

    def gather(self) -> Gathered:
        """The held events joined with commas, their lengths (``u32`` each), and where it stopped.

        Stops early, before the first word that is not a record's, if another
        process wrote to the ring file: the events from there on are lost.
        """
        return Gathered(*self._impl.gather(self.buf, self.end))

    def events(self) -> List[bytes]:
        """The held events, one by one."""
        return scan(self.buf[: self.end], self.msgsize)

    def clear(self) -> None:
        """Forget the held events: they are in the spool now."""
        if self.end:
            # The first word's "full" bit goes first: a kill in the middle of the
            # memset then leaves a ring that scan() reads as empty, not as garbage.
            self.buf[7] = 0
            self.buf[: self.end] = memoryview(self._zeros)[: self.end]
        self.end = self.count = 0

    def close(self) -> None:
        """Unmap; remove the file and its directory unless it still holds unspooled events."""
        self.buf.close()
        if self.count:
            return  # the next start spools them
        for remove, path in ((os.unlink, self.path), (os.rmdir, os.path.dirname(self.path))):
            try:
                remove(path)
            except OSError:
                pass  # gone already, or the spool directory itself (not empty): leave it
