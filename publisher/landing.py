"""The landing zone: ``mq_receive`` writes each event straight into a file-backed page.

Taking a message off a POSIX queue and writing it to the spool cannot be one
atomic step: between them the event exists only in the publisher's memory,
and a ``kill -9`` there would lose it. So the drain loop receives into slots of
a small ``mmap``-ed file (``MAP_SHARED``): the moment ``mq_receive`` returns,
the bytes are in the page cache, which outlives the process. After the slots
are appended to the spool they are zeroed. On start, whatever is still in a
slot is appended to the spool first (at-least-once: it may be there already).

A slot is an 8-byte length word (the length, with a "full" bit) and room for
one message. If the process died between ``mq_receive`` and writing the length
word, the length is recovered from the data: an event is JSON and never ends
in a NUL byte.

Uses ``ctypes`` on ``mq_timedreceive`` (librt). Where that is unavailable the
drain loop falls back to :meth:`MessageQueue.get_many`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import mmap
import os
import struct
import zlib
from typing import List, Optional

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("<Q")
_FULL = 1 << 63


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


def landing_directory(spool_path: str) -> str:
    """Where the landing zone of a spool lives: RAM-backed if the system has /dev/shm.

    Files there survive the process (a ``kill -9``) but not a reboot, and cost no
    disk writeback. One private directory per spool; else the spool directory.
    """
    base = "/dev/shm"
    if os.path.isdir(base) and os.access(base, os.W_OK):
        tag = f"{zlib.crc32(os.path.realpath(spool_path).encode()):08x}"
        path = os.path.join(base, f"baseplate-events-{os.getuid()}-{tag}")
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            info = os.stat(path)
        except OSError:
            return spool_path
        if info.st_uid == os.getuid() and not info.st_mode & 0o077:
            return path
    return spool_path


def landing_name(slots: int, slot_size: int) -> str:
    return f"landing-{slots}x{slot_size}"


def collect_leftovers(directory: str) -> List[bytes]:
    """Events left in any landing file of ``directory`` (any geometry), which are then removed.

    Call before opening a :class:`Landing` there; the caller spools what this returns.
    """
    out: List[bytes] = []
    for name in sorted(os.listdir(directory)):
        if not name.startswith("landing-"):
            continue
        try:
            slots, slot_size = (int(x) for x in name[len("landing-") :].split("x"))
        except ValueError:
            continue
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            data = f.read()
        out.extend(_scan(data, slots, slot_size))
    return out


def remove_landings(directory: str) -> None:
    for name in os.listdir(directory):
        if name.startswith("landing-"):
            os.unlink(os.path.join(directory, name))


def _scan(data: bytes, slots: int, slot_size: int) -> List[bytes]:
    out: List[bytes] = []
    stride = _LENGTH.size + slot_size
    for slot in range(slots):
        start = slot * stride
        if start + stride > len(data):
            break
        (word,) = _LENGTH.unpack_from(data, start)
        if word & _FULL:
            out.append(data[start + 8 : start + 8 + (word & ~_FULL)])
            continue
        event = data[start + 8 : start + stride].rstrip(b"\0")
        if not event:
            break  # slots fill in order: the rest are empty
        out.append(event)  # the process died between mq_receive and the length word
    return out


class Landing:
    """``slots`` file-backed receive buffers of ``slot_size`` bytes in ``directory``.

    Open it only after :func:`collect_leftovers` has been spooled: it starts empty.
    """

    def __init__(self, directory: str, slots: int, slot_size: int) -> None:
        receive = _load_receive()
        if receive is None:
            raise OSError(errno.ENOSYS, "mq_timedreceive is not available through ctypes")
        self._receive = receive
        self.path = os.path.join(directory, landing_name(slots, slot_size))
        self.slots = slots
        self.slot_size = slot_size
        self.stride = _LENGTH.size + slot_size
        size = slots * self.stride
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            # Reserve the pages now: a full tmpfs must fail here (we fall back), not
            # with SIGBUS on the first write through the mapping.
            os.posix_fallocate(fd, 0, size)
            self.buf = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._anchor = ctypes.c_char.from_buffer(self.buf)
        self._base = ctypes.addressof(self._anchor)
        self._zero = memoryview(bytes(self.stride))
        self._zero_run = memoryview(bytes(min(size, 256 * 1024)))
        self._past = _Timespec(0, 0)  # an absolute time long gone: never wait
        self._past_ref = ctypes.byref(self._past)
        self._slot_ptrs = [
            ctypes.c_void_p(self._base + slot * self.stride + _LENGTH.size)
            for slot in range(slots)
        ]
        self._size = ctypes.c_size_t(slot_size)
        self._lengths: List[int] = []

    def receive(self, mqd: int, limit: int) -> List[bytes]:
        """Take up to ``limit`` waiting messages into slots; return them (copies), in order."""
        receive = self._receive
        buf, stride, size, slot_ptrs = self.buf, self.stride, self._size, self._slot_ptrs
        pack = _LENGTH.pack_into
        past = self._past_ref
        queue = ctypes.c_int(mqd)
        out: List[bytes] = []
        lengths = self._lengths
        n = len(lengths)
        limit = min(limit, self.slots)
        while n < limit:
            start = n * stride
            got = receive(queue, slot_ptrs[n], size, None, past)
            if got < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    continue
                if err in (errno.EAGAIN, errno.ETIMEDOUT):
                    break
                raise OSError(err, os.strerror(err))
            pack(buf, start, got | _FULL)
            out.append(buf[start + 8 : start + 8 + got])
            lengths.append(got)
            n += 1
        return out

    def clear(self) -> None:
        """Forget the filled slots: their events are in the spool now."""
        lengths = self._lengths
        if not lengths:
            return
        buf, stride = self.buf, self.stride
        end = (len(lengths) - 1) * stride + 8 + lengths[-1]
        if end <= len(self._zero_run):
            buf[:end] = self._zero_run[:end]  # one memset beats a Python loop over slots
        else:
            zero = self._zero
            for slot, length in enumerate(lengths):
                start = slot * stride
                buf[start : start + 8 + length] = zero[: 8 + length]
        lengths.clear()

    def close(self) -> None:
        """Unmap; remove the file and its directory unless slots still hold unspooled events."""
        del self._anchor
        self.buf.close()
        if self._lengths:
            return  # the next start spools them
        for remove, path in ((os.unlink, self.path), (os.rmdir, os.path.dirname(self.path))):
            try:
                remove(path)
            except OSError:
                pass  # gone already, or the spool directory itself (not empty): leave it
