"""Sending a dead-letter file again: ``python -m publisher --replay-dead-letter FILE config.ini``.

Once the collector is fixed, the events it refused can go out again, through
the publisher's own batching, signing, POST and delivery policy (the section
``[event-publisher:NAME]`` of ``--queue-name`` gives the collector, key and
version). It can run beside the publisher. Every step is safe to kill:

1. FILE is renamed FILE.replaying; a running publisher starts a new FILE for
   new dead letters (see :mod:`publisher.send.dead_letters`). A FILE.replaying left
   by a killed replay is finished first, from where it stopped.
2. Its events are sent in batches of ``batch.max_bytes``. Refused again, with
   evidence that the collector is otherwise healthy, they go to
   ``dead_letter.path`` as they would from the publisher.
3. After each batch, the byte offset reached is saved in FILE.replaying.sent
   (a temporary file, synced, renamed over it). A killed replay resumes there:
   the batch in flight may be sent twice (at least once), none is skipped.
4. At the end, under the dead-letter file's lock (so that no append is half
   done), FILE.replaying is renamed FILE.replayed (FILE.replayed.2, ... when
   taken) and the offset file is removed. An offset file with no
   FILE.replaying beside it is left by a replay killed between the two: it
   belongs to no file, and is removed before FILE is renamed, so that a fresh
   FILE is always sent from its first byte.
5. When the offset cannot be saved (a full disk), the replay stops with exit
   status 1 and one line naming the file; the next run resumes from the last
   offset saved (the batch in flight goes twice).

Lines that hold no event are reported by number and stay in the archived file.
So do lines recorded for another queue (their ``"queue"`` is not ``--queue-name``):
sent under this queue's key they could reach the wrong collector or schema, so
they are skipped, counted and named in the summary, unless ``--any-queue`` is
given (then replay the archived file with it to send them).

Exit status: 0 when every event was sent or set aside again; 1 when the replay
stopped (a signal, the collector refused events and accepted nothing: it is
not fixed yet, or the progress could not be saved), with the rest kept for the
next run; 2 for an unusable file.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import sys
import threading
from typing import Dict, Iterator, List, NamedTuple, Optional

from publisher.send.batches import BatchBuilder
from publisher.spool.chunk import Chunk
from publisher.send.dead_letters import DeadLetter, UnreadableLine, read
from publisher.send.delivery import Deliverer
from publisher.metrics.counters import Metrics
from publisher.send.post import Poster
from publisher.spool.framing import join_events
from publisher.config.sections import PublisherConfig

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.replay")

WORKING = ".replaying"
PROGRESS = ".replaying.sent"
ARCHIVED = ".replayed"


class FileBatch(NamedTuple):
    """A batch of the file's events, and the byte offset just after its last line."""

    builder: BatchBuilder
    end: int


class ReplayError(Exception):
    """The file cannot be replayed (missing, unreadable, or another replay holds it)."""


class ProgressError(Exception):
    """The offset reached could not be saved (a full disk): the replay stops, to resume."""


def _save_progress(working: str, offset: int) -> None:
    temporary = working + ".sent.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = b"%d\n" % offset
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, working + ".sent")
    except OSError as exc:
        _remove(temporary)
        raise ProgressError(
            f"{working}.sent: cannot save the replay's progress ({exc.strerror}); the rest "
            f"stay in {working}: make room and run the same command again (the last batch "
            "sent goes twice)"
        ) from exc


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _load_progress(working: str) -> int:
    try:
        with open(working + ".sent", "rb") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit():
        raise ReplayError(f"{working}.sent: expected a byte offset, found {text[:40]!r}; "
                          "remove it to replay the whole file (events already sent go twice)")
    return int(text)


def _archive_name(path: str) -> str:
    name, number = path + ARCHIVED, 1
    while os.path.lexists(name):
        number += 1
        name = f"{path}{ARCHIVED}.{number}"
    return name


class Replay:
    """Replays one dead-letter file through ``deliverer``; see the module docstring."""

    def __init__(self, path: str, deliverer: Deliverer, version: str, max_bytes: int,
                 metrics: Metrics, stop: threading.Event, queue: str = "",
                 any_queue: bool = True) -> None:
        self.path = path
        #: This publisher's queue name, and whether lines recorded for another are sent too.
        self.queue = queue
        self.any_queue = any_queue
        #: Lines skipped this run because another queue recorded them, by that queue.
        self.other_queues: Dict[str, int] = {}
        self.working = path + WORKING
        self.deliverer = deliverer
        self.version = version
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.stop = stop
        self.unreadable: List[UnreadableLine] = []
        self.position = 0  # bytes of the working file read so far

    def run(self) -> int:
        """Replay a leftover FILE.replaying, then FILE; the exit status."""
        directory = os.path.dirname(os.path.abspath(self.path))
        fresh = os.path.exists(self.path)
        if not fresh and not os.path.exists(self.working):
            raise ReplayError(f"{self.path}: no such dead-letter file")
        lock = os.open(directory, os.O_RDONLY)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReplayError(f"{directory}: another replay is running there") from None
            if os.path.exists(self.working):
                logger.info("replay: finishing %s, left by an interrupted replay", self.working)
                if not self._replay_working():
                    return 1
            else:
                # Left by a replay killed after archiving its file: it is no offset into FILE.
                _remove(self.path + PROGRESS)
            if fresh and os.path.exists(self.path):
                os.rename(self.path, self.working)
                if not self._replay_working():
                    return 1
            return 0
        finally:
            os.close(lock)

    def _replay_working(self) -> bool:
        """Send FILE.replaying from its saved offset and archive it; False if stopped."""
        self.position = _load_progress(self.working)
        self.other_queues = {}
        sent = self.metrics.totals.get("sent", 0)
        refused = self.metrics.totals.get("dead_letter", 0)
        self.unreadable = []
        while True:
            if not self._send():
                self._report_stop(sent, refused)
                return False
            # Under the writers' lock: an append begun before the rename is complete.
            fd = os.open(self.working, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size > self.position:
                    tail = os.pread(fd, size - self.position, self.position)
                    if b"\n" in tail:
                        continue  # lines appended since: send them too
                    self.unreadable.append(UnreadableLine(
                        self._line_count() + 1, "cut short (no newline at the end)", size))
                archive = _archive_name(self.path)
                os.rename(self.working, archive)
            finally:
                os.close(fd)
            break
        _remove(self.working + ".sent")
        for line in self.unreadable:
            logger.warning("replay: line %d of %s holds no event (%s); skipped", line.line,
                           archive, line.problem)
        summary = (
            f"replay of {self.path}: sent {self.metrics.totals.get('sent', 0) - sent} events; "
            f"{self.metrics.totals.get('dead_letter', 0) - refused} refused again, written to "
            f"{self.deliverer.dead_letters.path}; {len(self.unreadable)} unreadable lines "
            f"skipped; {self._skipped_text()}archived as {archive}"
        )
        logger.info("%s", summary)
        print(summary, flush=True)
        return True

    def _skipped_text(self) -> str:
        """The lines another queue recorded, for the summary (empty when none)."""
        if not self.other_queues:
            return ""
        queues = ", ".join(f"{count} for {name!r}" for name, count in
                           sorted(self.other_queues.items()))
        return (f"{sum(self.other_queues.values())} events skipped because another queue "
                f"recorded them ({queues}; this is {self.queue!r}): replay the archived file "
                "with --any-queue to send them under this queue's key; ")

    def _line_count(self) -> int:
        with open(self.working, "rb") as f:
            return f.read(self.position).count(b"\n")

    def _send(self) -> bool:
        """Send every complete line after :attr:`position`; False if stopped."""
        batches = self._batches()
        for batch, end in batches:
            if self.stop.is_set():
                return False
            taken = [end]

            def more(taken: List[int] = taken) -> Optional[BatchBuilder]:
                probe = next(batches, None)
                if probe is None:
                    return None
                taken.append(probe.end)
                return probe.builder

            if not self.deliverer.deliver(batch.body(), batch.count, batch.events, more):
                return False
            _save_progress(self.working, taken[-1])
        return not self.stop.is_set()

    def _batches(self) -> Iterator[FileBatch]:
        """Batches of the lines after :attr:`position`, each with the offset after it."""
        builder = BatchBuilder(self.version, self.max_bytes)
        end = self.position
        for item in read(self.working, self.position, partial=False):
            self.position = item.end
            if isinstance(item, UnreadableLine):
                self.unreadable.append(item)
            elif not self.any_queue and item.queue and item.queue != self.queue:
                self.other_queues[item.queue] = self.other_queues.get(item.queue, 0) + 1
            else:
                assert isinstance(item, DeadLetter)
                rest = builder.add(Chunk(*join_events([item.event])))
                if rest is not None:
                    yield FileBatch(builder, end)
                    builder = BatchBuilder(self.version, self.max_bytes)
                    builder.add(rest)
            end = item.end
        if builder.count:
            yield FileBatch(builder, end)

    def _report_stop(self, sent: int, refused: int) -> None:
        counts = (
            f"sent {self.metrics.totals.get('sent', 0) - sent} events, "
            f"{self.metrics.totals.get('dead_letter', 0) - refused} refused again; the rest "
            f"stay in {self.working}"
        )
        answer = self.deliverer.gave_up
        if answer is not None:
            message = (
                f"replay of {self.path} stopped: the collector still refuses these events "
                f"({answer.status}: {answer.reason}) and accepted nothing else since; {counts}: "
                "run the same command again once the collector is fixed (that file goes "
                "first; move it away to skip its events)"
            )
        else:
            message = f"replay of {self.path} stopped by a signal; {counts}: run the same " \
                      "command again to resume"
        logger.error("%s", message)
        print(message, flush=True)


def main(cfg: PublisherConfig, path: str, any_queue: bool = False) -> int:
    """``--replay-dead-letter FILE``: the exit status."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics = Metrics(cfg.metrics.namespace, cfg.metrics.endpoint)
    collector = cfg.collector
    poster = Poster.from_config(collector, cfg.key, metrics)
    deliverer = Deliverer.from_config(cfg, poster.post, metrics, stop.wait,
                                      wait_for_evidence=False)
    logger.info("replay: sending the events of %s to %s (version %s, key %s)", path,
                collector.url, collector.version, cfg.key.name)
    try:
        return Replay(path, deliverer, collector.version, cfg.batch.max_bytes, metrics,
                      stop, queue=cfg.queue_name, any_queue=any_queue).run()
    except ReplayError as exc:
        sys.stderr.write(f"baseplate-events-publisher: error: {exc}\n")
        return 2
    except ProgressError as exc:
        sys.stderr.write(f"baseplate-events-publisher: error: {exc}\n")
        return 1
    except OSError as exc:
        if exc.filename is None:
            raise
        sys.stderr.write(f"baseplate-events-publisher: error: {exc.filename}: {exc.strerror}\n")
        return 2
    finally:
        poster.close()
