"""The newest segment file, open for appending: records go in whole or not at all.

A write that fails or comes up short (a full disk) is cut back to the last
whole record before the error is raised. Should the cut fail too, the writer
is *dirty*: the spool starts a new segment before the next record, so no
record ever follows a partial one. ``spool.fsync`` is applied here.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from typing import Callable, List

from publisher.spool.format import segment_name

# The spool's logger (see publisher.spool.store): its writes are the spool's to report.
logger = logging.getLogger("publisher.spool")


class SegmentWriter:
    """Appends records to the segment being written, with ``spool.fsync``'s policy.

    ``fd`` is the segment's file; the spool swaps it (under its lock) when it
    starts a new segment from :meth:`create`, and hands the old one to :meth:`retire`.
    """

    def __init__(self, open_file: Callable[[str, int], int], dir_fd: int, path: str,
                 fsync: str, fsync_interval: float) -> None:
        self._open = open_file
        self._dir = dir_fd
        self._path = path
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self._last_sync = 0.0
        self.fd = -1
        #: A failed write could not be cut back: the next record needs a new segment.
        self.dirty = False

    def create(self, number: int) -> int:
        """Create segment ``number`` (durably named, unless ``fsync = never``); its file."""
        fd = self._open(segment_name(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        if self.fsync != "never":
            os.fsync(self._dir)
        return fd

    def write(self, parts: List[bytes], size: int, good: int, number: int) -> None:
        """Append one record's ``parts`` (``size`` bytes) to segment ``number``.

        :raises OSError: it could not be written whole: the file is cut back to
            ``good`` bytes, as it was, and the caller may try again.
        """
        try:
            written = os.writev(self.fd, parts)
            if written != size:
                raise OSError(errno.ENOSPC, f"short write to the spool ({written} of {size} "
                                            "bytes)")
            if self.fsync == "always" or (
                self.fsync == "interval"
                and time.monotonic() - self._last_sync >= self.fsync_interval
            ):
                os.fdatasync(self.fd)
                self._last_sync = time.monotonic()
        except OSError:
            self._cut_back(good, number)
            raise

    def _cut_back(self, good: int, number: int) -> None:
        try:
            os.ftruncate(self.fd, good)
        except OSError as exc:
            logger.error("spool: cannot cut %s back to %d bytes after a failed write (%s); "
                         "the next record goes to a new segment",
                         os.path.join(self._path, segment_name(number)), good, exc)
            self.dirty = True

    def retire(self, fd: int) -> None:
        """Close a finished segment's file, durably unless ``fsync = never``."""
        if self.fsync != "never":
            os.fdatasync(fd)
        os.close(fd)

    def sync(self) -> None:
        """Make every record written so far durable."""
        os.fdatasync(self.fd)
