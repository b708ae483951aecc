"""Upgrades: replay what a publisher left at the old default spool path.

Under systemd (``$STATE_DIRECTORY`` set) the spool defaults to
``$STATE_DIRECTORY/<queue>``; earlier releases always used
``/var/tmp/baseplate-events-<uid>/<queue>``. A spool left there, and its
landing zone in /dev/shm, would be forgotten by the upgrade, so on start the
publisher appends their pending events to the new spool and removes the old
files (at-least-once: a kill in the middle replays them again).
"""
from __future__ import annotations

import logging
import os

from publisher.intake.landing import LandingError, collect_leftovers, landing_directory
from publisher.intake.landing import landing_path, remove_landings
from publisher.spool.store import Position, Spool, SpoolError

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.upgrade")


def replay_old_spool(spool: Spool, old_path: str) -> int:
    """Move every pending event of the spool at ``old_path`` into ``spool``; how many.

    Nothing happens when ``old_path`` does not exist. An old spool that cannot
    be used (another publisher holds it, another user planted it), or that
    cannot be moved now (a full disk), is left as it is, with an error in the
    log: the next start tries again.
    """
    try:
        return _replay(spool, old_path)
    except OSError as exc:
        logger.error("upgrade: cannot replay the old spool %s now (%s); it stays for the next "
                     "start", old_path, exc)
        return 0


def _replay(spool: Spool, old_path: str) -> int:
    moved = 0
    if os.path.lexists(old_path):
        try:
            old = Spool(old_path, fsync="never", max_bytes=1 << 62)
        except SpoolError as exc:
            logger.error("upgrade: cannot replay the old spool: %s", exc)
            return 0
        try:
            position = old.ack_position
            while (record := old.read(position)) is not None:
                events = record.rest(position).events()
                if events:
                    spool.append(events)
                    moved += len(events)
                position = Position.after(record)
            spool.sync()
        except BaseException:
            old.close()
            raise
        old.destroy()
    moved += _replay_old_landing(spool, old_path)
    if moved:
        logger.warning("upgrade: replayed %d events left at the old spool path %s", moved,
                       old_path)
    return moved


def _replay_old_landing(spool: Spool, old_path: str) -> int:
    if not os.path.lexists(landing_path(old_path)):
        return 0
    try:
        directory = landing_directory(old_path)
    except LandingError as exc:
        logger.error("upgrade: cannot replay the old landing zone: %s", exc)
        return 0
    events = [m for m in collect_leftovers(directory) if m]
    if events:
        spool.append(events)
        spool.sync()
    remove_landings(directory)
    try:
        os.rmdir(directory)
    except OSError:
        pass
    return len(events)
