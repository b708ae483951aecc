"""The command line: ``python -m publisher --queue-name NAME [--debug] config.ini``.

``--replay-dead-letter FILE`` sends the events of a dead-letter file again
instead (see :mod:`publisher.send.replay`); those recorded for another queue only
with ``--any-queue``.

Exit status: 0 after a clean shutdown, 2 when the configuration, the queue or
the spool cannot be used (one line on stderr says which key and why), 128+N
when a second signal N cut the shutdown short.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import sys
import threading
from typing import List, Optional

from baseplate_events.errors import ConfigError, MessageQueueError
from baseplate_events.mqueue.posix import MessageQueue
from baseplate_events.mqueue.limits import QueueSettingNames

from publisher.config import parse as config_module
from publisher.config import table as settings_table
from publisher.send import replay
from publisher.send.delivery import Deliverer
from publisher.intake.landing import LandingError, landing_directory
from publisher.daemon import Publisher
from publisher.metrics.counters import Metrics
from publisher.send.post import Poster
from publisher.config.sections import QueueSection
from publisher.spool.store import Spool, SpoolError
from publisher.send.transport import ProxyVariableError, check_proxy_environment
from publisher.spool.upgrade import replay_old_spool

# glibc's mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

logger = logging.getLogger("publisher")

PROG = "baseplate-events-publisher"


def _arguments(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Drain /events-NAME and publish its events to the event collector.",
    )
    parser.add_argument("config_file", help="INI file with an [event-publisher:NAME] section")
    parser.add_argument(
        "--queue-name",
        default="main",
        help="queue /events-NAME and config section [event-publisher:NAME] (default: main)",
    )
    parser.add_argument("--debug", action="store_true", help="log every batch")
    parser.add_argument(
        "--replay-dead-letter",
        metavar="FILE",
        help="send the events of a dead-letter file again (once the collector is fixed), "
        "then exit; see publisher.send.replay",
    )
    parser.add_argument(
        "--any-queue",
        action="store_true",
        help="with --replay-dead-letter: also send the lines recorded for another queue "
        "(skipped by default)",
    )
    return parser.parse_args(argv)


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return 2


#: How the publisher's config spells the settings that shape the queue.
QUEUE_SETTINGS = QueueSettingNames("max_queue_size", "max_event_size", "queue.mode")


def _open_queue(section: QueueSection) -> "tuple[MessageQueue, bool]":
    """Open the queue, creating it with mode ``queue.mode`` if the apps have not yet.

    One the apps (or another user) made is checked before use: see
    :mod:`baseplate_events.mqueue.access`.
    """
    queue = MessageQueue(
        section.path,
        section.max_queue_size,
        section.max_event_size,
        mode=section.mode,
        setting_names=QUEUE_SETTINGS,
    )
    return queue, queue.created


def _keep_big_buffers() -> None:
    """Let glibc's malloc reuse the sender's half-megabyte buffers instead of
    mapping fresh pages for each batch (measured: about 150 page faults per
    batch gone). Elsewhere (musl, macOS) nothing happens.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    mallopt(_M_MMAP_THRESHOLD, 4 << 20)


def _count_damage(metrics: Metrics, events: int, size: int) -> None:
    """Damaged spool records skipped: the events they held (when known) and their bytes."""
    if size:
        metrics.incr("dropped.spool_damaged", events)
        metrics.incr("spool.damaged_bytes", size)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the publisher; returns the exit status."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    _keep_big_buffers()
    try:
        cfg = config_module.load(args.config_file, args.queue_name)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        check_proxy_environment()
    except ProxyVariableError as exc:
        return _fail(str(exc))
    for warning in cfg.warnings:
        logger.warning("%s", warning)
    if cfg.unknown_keys:
        logger.warning(
            "[event-publisher:%s]: ignoring %s",
            cfg.queue_name,
            config_module.unknown_keys_text(cfg.unknown_keys),
        )
    if args.any_queue and args.replay_dead_letter is None:
        return _fail("--any-queue goes with --replay-dead-letter FILE")
    if args.replay_dead_letter is not None:
        return replay.main(cfg, args.replay_dead_letter, any_queue=args.any_queue)
    try:
        queue, created = _open_queue(cfg.queue)
    except MessageQueueError as exc:
        # QueueLimitError is also an OSError: its text without the "[Errno 22]" prefix.
        return _fail(exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    try:
        spool = Spool.from_config(cfg.spool)
    except SpoolError as exc:
        queue.close()
        return _fail(str(exc))
    try:
        landing_directory(spool.path)  # checked now, so that a bad one stops the start
    except LandingError as exc:
        queue.close()
        spool.close()
        return _fail(str(exc))
    old_default = settings_table.legacy_spool_path(cfg.queue_name)
    if cfg.spool.path == settings_table.default_spool_path(cfg.queue_name) != old_default:
        replay_old_spool(spool, old_default)

    metrics = Metrics.from_config(cfg.metrics, cfg.queue_name)
    spool.on_drop = lambda events, size: metrics.incr("dropped.spool_full", events)
    spool.on_damage = lambda events, size: _count_damage(metrics, events, size)
    _count_damage(metrics, spool.damaged_events, spool.damaged_bytes)
    poster = Poster.from_config(cfg.collector, cfg.key, metrics)
    stopping = threading.Event()
    deliverer = Deliverer.from_config(cfg, poster.post, metrics, stopping.wait)
    logger.info(
        "starting: queue %s (%s, mode %s, %d messages x %d bytes, %d waiting); "
        "collector %s (version %s, key %s); %s",
        cfg.queue.path,
        "created" if created else "opened",
        f"{queue.mode:04o}",
        queue.max_messages,
        queue.max_message_size,
        queue.depth,
        cfg.collector.url,
        cfg.collector.version,
        cfg.key.name,
        metrics.target,
    )
    publisher = Publisher(cfg, queue, spool, deliverer, metrics, abandon=stopping)
    publisher.install_signal_handlers()
    logger.info(
        "spool %s: %d events (%d bytes) to replay from an earlier run%s; budget %d bytes, "
        "fsync %s; batches of at most %d bytes, %gs",
        spool.path,
        spool.recovered_events,
        spool.recovered_bytes,
        f", cut {spool.truncated_bytes} torn bytes" if spool.truncated_bytes else "",
        spool.max_bytes,
        cfg.spool.fsync,
        cfg.batch.max_bytes,
        cfg.batch.max_wait,
    )
    try:
        return publisher.run()
    finally:
        poster.close()
        metrics.close()


def console_main() -> None:
    """Entry point of the ``baseplate-events-publisher`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
