"""The spool at start-up: which segments there are, where the ack is, what is damaged.

Before the publisher appends to a spool it reads back every segment after the
ack position and checks every record whole (bounds and CRC, see
:mod:`.framing`). A damaged record (a flipped byte) costs that record
only: the check resumes at the next whole record, and the stretch skipped is
reported as a :class:`Damage` for the spool to log and count. A torn record
at the very end (a crash or a full disk mid-write) is cut off. Anything in
the directory that is not a spool file is skipped with a warning.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List

from publisher.spool.framing import check_record, next_record, unpack_header
from publisher.spool.damage import Damage, damage
from publisher.spool.format import (
    Position,
    segment_name,
    segment_number,
    unpack_ack,
)

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.spool_recovery")

#: Names other than segments that belong in a spool directory (the default
#: dead-letter and health files sit there, and the landing zone when /dev/shm
#: cannot hold it).
_KNOWN_NAMES = ("lock", "ack", "dead-letter.jsonl", "health.json")
_KNOWN_PREFIXES = ("health.json.", "dead-letter.", "landing-")


@dataclass
class Recovered:
    """What :func:`recover` found."""

    ack: Position
    #: Segment number -> length of its whole records.
    sizes: Dict[int, int] = field(default_factory=dict)
    damage: List[Damage] = field(default_factory=list)
    pending_events: int = 0
    pending_bytes: int = 0
    truncated_bytes: int = 0


def recover(dir_fd: int, path: str, ack_fd: int) -> Recovered:
    """Check the spool in ``dir_fd`` (named ``path`` in messages) from its ack position on.

    Segments wholly before the ack position are removed; a torn tail is cut off.
    """
    segments = _segments(dir_fd, path)
    found = Recovered(_read_ack(ack_fd, segments))
    ack = found.ack
    for number in segments:
        if number < ack.segment:
            os.unlink(segment_name(number), dir_fd=dir_fd)
            continue
        fd = os.open(segment_name(number), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dir_fd)
        try:
            found.sizes[number] = _check_segment(fd, number, path, found)
        finally:
            os.close(fd)
        found.pending_bytes += found.sizes[number] - (ack.offset if number == ack.segment else 0)
    return found


def _check_segment(fd: int, number: int, path: str, found: Recovered) -> int:
    """Walk one segment's records; note damage, count what is pending; its good length."""
    ack = found.ack
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    size = len(data)
    offset = 0
    while offset < size:
        delivered = ack.taken if (number, offset) == ack.place else 0
        header = check_record(data, offset)
        if header is not None:
            if (number, offset) >= ack.place:
                found.pending_events += header.event_count - delivered
            offset += header.record_size
            continue
        resume = next_record(data, offset + 1)
        if resume >= size:
            found.truncated_bytes += size - offset
            header = unpack_header(data, offset)
            if header is not None and offset + header.record_size == size:
                # A whole record that fails its CRC: damage, not a torn write.
                found.damage.append(damage(number, offset, size, header, delivered))
            else:
                logger.warning(
                    "spool: cut %d torn bytes off the end of %s (a crash or a full disk "
                    "mid-write)", size - offset, os.path.join(path, segment_name(number)),
                )
            os.ftruncate(fd, offset)
            return offset
        if (number, resume) > ack.place:
            found.damage.append(
                damage(number, offset, resume, unpack_header(data, offset), delivered))
        offset = resume
    return size


def _segments(dir_fd: int, path: str) -> List[int]:
    """Segment numbers found in the directory; anything odd is skipped with a warning."""
    numbers = []
    for name in sorted(os.listdir(dir_fd)):
        number = segment_number(name)
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if number is not None and stat.S_ISREG(info.st_mode):
            numbers.append(number)
        elif number is not None or not stat.S_ISREG(info.st_mode) or not (
            name in _KNOWN_NAMES or name.startswith(_KNOWN_PREFIXES)
        ):
            logger.warning("spool: skipping %s: %s", os.path.join(path, name), _oddity(info))
    return sorted(numbers)


def _read_ack(ack_fd: int, segments: List[int]) -> Position:
    data = os.pread(ack_fd, 64, 0)
    position = unpack_ack(data)
    if position is not None:
        return position
    if data.strip(b"\0"):
        logger.warning("spool: the ack file is damaged; replaying every spooled event")
    return Position(segments[0], 0, 0) if segments else Position(0, 0, 0)


def _oddity(info: os.stat_result) -> str:
    if stat.S_ISDIR(info.st_mode):
        return "a directory, not a spool file"
    if stat.S_ISLNK(info.st_mode):
        return "a symlink, not a spool file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return "not a name the spool uses"
