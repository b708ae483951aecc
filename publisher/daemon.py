"""The publisher's two loops: the intake loop takes the queue into the spool, the sender
sends the spool to the collector; and the shutdown that ends them.

The main thread runs only the intake loop: one ``select`` wake-up takes every waiting
message (up to ``drain.max_messages``) and appends them to the spool in one
write. It never waits for the collector, so the queue keeps emptying through
any outage. The sender thread reads the spool back, cuts batches of at most
``batch.max_bytes`` that wait at most ``batch.max_wait``, gzips, POSTs and
acknowledges. Memory stays bounded: the backlog lives on disk.

Signal handlers only count signals (the wake-up fd breaks the ``select``).
First SIGTERM/SIGINT: stop taking events, let the sender flush until
``shutdown.deadline``, leave the rest in the spool, exit 0. Second: exit now.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
from types import FrameType
from typing import Callable, List, Optional

from baseplate_events.mqueue.posix import MessageQueue

from publisher.metrics import health
from publisher.send.assembler import Assembler, Batch, Peeker
from publisher.send.batches import BatchBuilder
from publisher.send.delivery import Deliverer
from publisher.intake.landing import Landing, collect_leftovers, landing_directory, remove_landings
from publisher.metrics.counters import Metrics
from publisher.config.sections import PublisherConfig
from publisher.spool.store import Position, Spool
from publisher.intake.sources import LandingIntake, MemoryIntake
from publisher.intake.stall import Stall

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.loop")

#: How often the queue-depth and spool gauges are sent.
GAUGE_INTERVAL = 1.0
#: Size of the landing zone (receive buffers backed by a file).
LANDING_BYTES = 4 << 20
#: How often a spool that cannot be written (a full disk) is retried, and logged.
SPOOL_RETRY_INTERVAL = 1.0


class Publisher:
    """Runs the intake loop in the calling thread and the sender in its own."""

    def __init__(
        self,
        cfg: PublisherConfig,
        queue: MessageQueue,
        spool: Spool,
        deliverer: Deliverer,
        metrics: Metrics,
        abandon: Optional[threading.Event] = None,
    ) -> None:
        self.cfg = cfg
        self.queue = queue
        self.spool = spool
        self.deliverer = deliverer
        self.metrics = metrics
        self.assembler = Assembler.from_config(spool, cfg.collector.version, cfg.batch)
        self.flushing = threading.Event()
        # Set when the flush deadline passed: the deliverer's backoff sleeps on it too.
        self.abandon = abandon if abandon is not None else threading.Event()
        self.signals: List[int] = []
        self.last_success: Optional[float] = None
        self.batches_sent = 0
        self.events_sent = 0
        self.drained = 0
        self.stall = Stall()
        self._sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- signals -----------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self.signals.append(signum)

    def install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # -- main --------------------------------------------------------------------

    def run(self) -> int:
        """Take events in until a signal, then flush and return the exit status."""
        if signal.getsignal(signal.SIGTERM) != self._on_signal:
            self.install_signal_handlers()
        self._sender.start()
        self._intake()
        return self._shutdown()

    def _intake(self) -> None:
        source = self._intake_source()
        next_gauge = next_health = time.monotonic()
        next_log = next_health + self.cfg.health.log_interval
        while not self.signals:
            now = time.monotonic()
            if now >= next_gauge:
                next_gauge = now + GAUGE_INTERVAL
                self._gauges()
            if now >= next_health:
                next_health = now + self.cfg.health.interval
                doc = self.health()
                health.write(self.cfg.health.path, doc)
                if self.cfg.health.log_interval and now >= next_log:
                    next_log = now + self.cfg.health.log_interval
                    logger.info("%s", health.line(doc))
            if source.take(max(0.0, min(next_gauge, next_health) - now)):
                self._empty_wake_pipe()
            if source.holding():
                source.spool()
        if source.holding():
            source.spool()
        source.close()

    def _intake_source(self) -> "LandingIntake | MemoryIntake":
        """The landing zone if it can be had; else memory, spooled every wake-up."""
        landing = self._open_landing()
        limit = self.cfg.drain.max_messages
        if landing is None:
            return MemoryIntake(self.queue, self._wake_r, limit, self._store)
        return LandingIntake(landing, self.queue.fileno(), self._wake_r, limit,
                             self.spool.append_joined, self._store, self._write, self.metrics)

    def _open_landing(self) -> Optional[Landing]:
        """Spool what a killed predecessor left in its landing zone, then open ours."""
        directory = landing_directory(self.spool.path)
        leftovers = [m for m in collect_leftovers(directory) if m]
        if leftovers:
            # On a full disk this waits like any spool write; stopped meanwhile, the
            # files stay (and no new ring truncates them) for the next start.
            if not self._write(lambda: self.spool.append(leftovers), len(leftovers),
                               landed=True):
                return None
            logger.warning(
                "landing: spooled %d events that a previous process took off the queue "
                "just before it died", len(leftovers)
            )
        remove_landings(directory)
        if not self.cfg.drain.landing:
            if directory != self.spool.path:
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
            return None
        try:
            return Landing(directory, LANDING_BYTES, self.queue.max_message_size)
        except OSError as exc:
            logger.warning("landing: unavailable (%s); a kill -9 may lose the events of "
                           "one wake-up", exc)
            return None

    def _store(self, messages: List[bytes], landed: bool = False) -> bool:
        """Put what was taken off the queue in the spool; see :meth:`_write`."""
        if not all(messages):
            kept = [m for m in messages if m]
            self.metrics.incr("dropped.empty", len(messages) - len(kept))
            logger.warning("dropped %d empty messages (not events)", len(messages) - len(kept))
            messages = kept
            if not messages:
                return True
        return self._write(lambda: self.spool.append(messages), len(messages), landed)

    def _write(self, append: Callable[[], None], count: int, landed: bool) -> bool:
        """Run ``append`` (``count`` events to the spool); hold them and retry if the disk fails.

        False only when stopping with a disk that takes nothing: the events then
        stay in the landing zone (``landed``) for the next start, or are lost.
        """
        while True:
            try:
                append()
                break
            except OSError as exc:
                if self.signals and landed:
                    logger.error("spool: cannot write %d events (%s) before exiting; they "
                                 "stay in the landing zone for the next start", count, exc)
                    return False
                if self.signals:
                    # Shutting down with a disk that takes nothing: say exactly what is lost.
                    logger.error("spool: cannot write %d events (%s) before exiting; "
                                 "they are lost", count, exc)
                    self.metrics.incr("dropped.spool_error", count)
                    return False
                self._stalled(count, exc)
        lasted = self.stall.recovered(time.monotonic())
        if lasted is not None:
            logger.warning("spool: writable again after %.0fs; taking events off the queue "
                           "again", lasted)
            self.metrics.gauge("spool.stalled", 0)
        self.drained += count
        # Counted as it happens, as sent is: a count reported later would trail
        # sent mid-burst, as if events were sent before they were taken.
        self.metrics.incr("drained", count)
        return True

    def _stalled(self, count: int, exc: OSError) -> None:
        """The spool cannot be written: hold the events, stop draining, wait and say so.

        The events taken stay held (in the landing zone or in memory); the queue
        fills behind them and the apps' puts fail with EventQueueFullError,
        which they count: nothing the publisher took is lost, and it resumes by
        itself once the disk has room.
        """
        now = time.monotonic()
        self.metrics.incr("spool.write_error")
        if self.stall.failed(now):
            assert self.stall.since is not None
            lasted = now - self.stall.since
            logger.error(
                "spool: %s write %d events to %s (%s); stopped taking events off the queue "
                "(it fills, and the apps' puts fail with EventQueueFullError) until the disk "
                "has room; retrying every %gs",
                f"for {lasted:.0f}s, still cannot" if lasted else "cannot",
                count, self.spool.path, exc, SPOOL_RETRY_INTERVAL,
            )
        self.metrics.gauge("spool.stalled", 1)
        self._gauges()
        # Sleep, but wake for a signal (its byte on the wake-up pipe).
        select.select([self._wake_r], [], [], SPOOL_RETRY_INTERVAL)

    def _empty_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _gauges(self) -> None:
        now = time.time()
        oldest = self.spool.oldest_pending_ms()
        if self.metrics.exports_moments:
            self.metrics.moment("spool.oldest", now if oldest is None else oldest / 1000)
        self.metrics.gauge("queue.depth", self.queue.depth)
        self.metrics.gauge("queue.capacity", self.queue.max_messages)
        self.metrics.gauge("spool.max_bytes", self.spool.max_bytes)
        self.metrics.gauge("spool.events", self.spool.pending_events)
        self.metrics.gauge("spool.bytes", self.spool.pending_bytes())
        # A batch that keeps failing: how often in a row, and how long its oldest event waits.
        self.metrics.gauge("batch.failed_tries", self.deliverer.failed_tries)
        self.metrics.gauge("spool.oldest_age_seconds",
                           0.0 if oldest is None else max(0.0, now - oldest / 1000))

    def health(self) -> dict:
        return health.report(
            queue=self.queue.name,
            queue_depth=self.queue.depth,
            spool_events=self.spool.pending_events,
            spool_bytes=self.spool.pending_bytes(),
            oldest_spooled_ms=self.spool.oldest_pending_ms(),
            last_success=self.last_success,
            counters=self.metrics.snapshot(),
            batch_failed_tries=self.deliverer.failed_tries,
        )

    # -- sender thread -----------------------------------------------------------

    def _send_loop(self) -> None:
        debug = logger.isEnabledFor(logging.DEBUG)
        self._lower_priority(self.cfg.sender.nice)
        while not self.abandon.is_set():
            try:
                batch = self.assembler.next_batch(self.flushing, self.abandon)
                if batch is None:
                    return
                builder = batch.builder
                # While refused events wait for evidence that the collector is
                # healthy, the deliverer may take the next batch as a probe: then
                # both are acknowledged together (see publisher.send.delivery).
                taken = [batch]

                def more(taken: List[Batch] = taken) -> Optional[BatchBuilder]:
                    probe = self.assembler.ready_batch(self.abandon)
                    if probe is None:
                        return None
                    taken.append(probe)
                    return probe.builder

                def probe_end(taken: List[Batch] = taken) -> Position:
                    return taken[-1].end

                peek = Peeker(self.assembler, probe_end)
                if not self.deliverer.deliver(builder.body(), builder.count, builder.events,
                                              more, peek):
                    return
                count = sum(b.builder.count for b in taken)
                self.spool.ack(taken[-1].end, count)
                if debug:
                    logger.debug("sent a batch of %d events (%d bytes)", builder.count,
                                 builder.size)
                self.last_success = time.time()
                self.metrics.moment("last_success", self.last_success)
                self.batches_sent += len(taken)
                self.events_sent += count
            except Exception:
                # A bug or a disk error must not stop delivery for good: start again
                # from the last acknowledged position (at-least-once), after the backoff.
                delay = self.deliverer.backoff.next_delay()
                logger.exception("sender: unexpected error; resuming from the spool in %.1fs",
                                 delay)
                self.metrics.incr("retry")
                self.assembler.cursor = self.spool.ack_position
                self.spool.rewind()
                if self.abandon.wait(delay):
                    return

    @staticmethod
    def _lower_priority(nice: int) -> None:
        """Make the calling (sender) thread ``nice`` steps nicer than the process.

        Draining is what keeps the apps' puts from failing; sending can lag, as
        the spool holds the difference. So when the CPU is short the intake loop
        (and, in one cgroup, whatever else runs there) goes first. On Linux a
        thread has a priority of its own; elsewhere this does nothing.
        """
        if not nice or not sys.platform.startswith("linux"):
            return
        try:
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
        except (AttributeError, OSError) as exc:
            logger.debug("sender.nice: cannot lower the sender's priority (%s)", exc)

    # -- shutdown ----------------------------------------------------------------

    def _shutdown(self) -> int:
        started = time.monotonic()
        name = signal.Signals(self.signals[0]).name
        sent_before, batches_before = self.events_sent, self.batches_sent
        logger.info(
            "shutdown (%s): stopped taking events; flushing %d spooled events within %gs "
            "(a second signal exits at once)",
            name,
            self.spool.pending_events,
            self.cfg.shutdown.deadline,
        )
        self.flushing.set()
        self.spool.wake()
        deadline = started + self.cfg.shutdown.deadline
        while self._sender.is_alive() and time.monotonic() < deadline:
            self._exit_on_second_signal()
            self._sender.join(0.05)
        if self._sender.is_alive():
            self.abandon.set()
            self.spool.wake()
            grace = time.monotonic() + 0.5
            while self._sender.is_alive() and time.monotonic() < grace:
                self._exit_on_second_signal()
                self._sender.join(0.05)
        health.write(self.cfg.health.path, self.health())
        logger.info(
            "shutdown: sent %d events in %d batches in %.2fs; %d events (%d bytes) stay in "
            "the spool %s for the next start",
            self.events_sent - sent_before,
            self.batches_sent - batches_before,
            time.monotonic() - started,
            self.spool.pending_events,
            self.spool.pending_bytes(),
            self.spool.path,
        )
        self.queue.close()
        if not self._sender.is_alive():
            self.spool.close()
        logger.info("shutdown: done")
        return 0

    def _exit_on_second_signal(self) -> None:
        if len(self.signals) >= 2:
            name = signal.Signals(self.signals[1]).name
            logger.warning(
                "second signal (%s): exiting now; %d unsent events stay in the spool %s",
                name,
                self.spool.pending_events,
                self.spool.path,
            )
            logging.shutdown()
            os._exit(128 + self.signals[1])
