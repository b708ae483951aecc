"""The collector process's CPU per event beside the floor: ``python -m benchmarks.collector_table``.

Each row runs ``python -m baseplate_events.collector`` (waitress, one
process) with one sink, with or without ``--schema``, and POSTs it signed,
gzipped v2 batches of ``--batch`` events (500) from two client threads, each
over one keep-alive connection, as a publisher sends them. The
collector's CPU (all its threads, librdkafka's included) is read from
``/proc`` over the same window as events/s; the Kafka rows write to a local
Tansu broker, whose CPU is not counted. Every row gets fresh events (SQLite
counts a uuid it has seen as a duplicate), built before the clock starts.

Beside them, measured in the same run:

- the floor: ``msgspec.json.decode(event_bytes)`` per event in a Python
  loop, the best of five runs of ``time.process_time``;
- Thrift's ``TJSONProtocol`` reading the events into the generated classes;
- the CPU of a wake-up round trip between two Python threads: what each
  hand-off between the server's threads costs on this machine (see
  :func:`wakeup_us`);
- with ``--reference PATH``, an older collector started from the checkout
  at PATH (``python -m demo_app.collector --db FILE``, the reference
  collector before the fast path; PYTHONPATH is set to PATH);
- with ``--before PATH``, every row again with the collector of the checkout
  at PATH (another commit, to compare before and after in one sitting;
  PYTHONPATH is PATH, then this checkout for the schema's module).

Options: ``--mix varied|sample`` (default varied: ``benchmarks/varied.thrift``),
``--events N`` per row (default 20000), ``--rows ROW,...`` (``kafka``,
``kafka+schema``, ``jsonl``, ``jsonl+schema``, ``sqlite``, ``sqlite+schema``;
default all), ``--repeat N`` (each row N times, interleaved; the median
is shown).
"""
from __future__ import annotations

import argparse
import base64
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import msgspec

from publisher.send.batches import build_body
from publisher.send.post import gzip_compress, sign

from .pipeline import cpu_seconds, stop_process
from .timing import client_threads

#: this checkout (its collector, and the schema modules under benchmarks/)
HERE = str(Path(__file__).resolve().parent.parent)
KEY_NAME = "bench"
SECRET = b"benchmark-secret"
ROWS = ("kafka", "kafka+schema", "jsonl", "jsonl+schema", "sqlite", "sqlite+schema")


class Mix:
    """A pool of events and the ``--schema`` of their struct."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "varied":
            from . import varied_events
            from .varied.ttypes import Checkout

            self.pool: Callable[[int, int], List[bytes]] = varied_events.varied_pool
            self.schema, self.cls = varied_events.SCHEMA, Checkout
        else:
            from demo_app.event_schemas.event.ttypes import Event

            from . import sample

            self.pool = sample.event_pool
            self.schema, self.cls = "demo_app.event_schemas.event.ttypes:Event", Event


def floor_us(events: Sequence[bytes]) -> float:
    """``msgspec.json.decode`` per event in a Python loop: best of five, process time."""
    decode = msgspec.json.decode
    best = []
    for _ in range(5):
        started = time.process_time()
        for event in events:
            decode(event)
        best.append((time.process_time() - started) / len(events) * 1e6)
    return min(best)


def wakeup_us(rounds: int = 5000) -> float:
    """CPU of one round trip between two Python threads (each wakes the other once).

    Not a collector figure: the price, on this machine, of each hand-off the
    server makes per batch (waitress's I/O thread to a worker and back, the
    GIL between two busy workers, librdkafka's threads to the one waiting
    for delivery reports). On a virtual machine it can be tens of µs.
    """
    ping, pong = threading.Semaphore(0), threading.Semaphore(0)

    def other() -> None:
        for _ in range(rounds):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other)
    thread.start()
    started = time.process_time()
    for _ in range(rounds):
        ping.release()
        pong.acquire()
    thread.join()
    return (time.process_time() - started) / rounds * 1e6


def thrift_us(events: Sequence[bytes], cls: Any) -> float:
    """Thrift's TJSONProtocol reading each event into ``cls``: best of three."""
    from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
    from thrift.TSerialization import deserialize

    factory = TJSONProtocolFactory()
    best = []
    for _ in range(3):
        started = time.process_time()
        for event in events:
            deserialize(cls(), event, factory)
        best.append((time.process_time() - started) / len(events) * 1e6)
    return min(best)


def bodies(events: List[bytes], batch: int) -> List[Tuple[bytes, str]]:
    out = []
    for start in range(0, len(events) - batch + 1, batch):
        plain = build_body("2", events[start:start + batch])
        out.append((gzip_compress(plain, 6), sign(KEY_NAME, SECRET, plain)))
    return out


class Server:
    """A collector command printing ``listening on http://HOST:PORT``; ``pid`` is its process."""

    def __init__(self, command: List[str], path: str, cwd: Path) -> None:
        # In another directory: ``python -m`` puts the current one first on sys.path,
        # before PYTHONPATH, and that must not choose which checkout's code runs.
        self.log = tempfile.NamedTemporaryFile(prefix="bpe-table-", suffix=".log", delete=False)
        #: each client thread's keep-alive connection (closed with the thread's locals)
        self._connections = threading.local()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=cwd,
                                        env={**os.environ, "PYTHONPATH": path})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://[^:]+:(\d+)", self._text())
            if match:
                self.port = int(match.group(1))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        text = self._text()  # before stop() removes the log
        self.stop()
        raise RuntimeError(f"{command} did not start:\n{text[-2000:]}")

    def _text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def post(self, body: bytes, signature: str) -> Tuple[int, bytes]:
        """POST one batch over this thread's keep-alive connection, as a publisher does
        (one connection each); once more on a new one if the server had closed it."""
        connection = getattr(self._connections, "connection", None)
        if connection is not None:
            try:
                return self._post_on(connection, body, signature)
            except (http.client.HTTPException, ConnectionError):  # closed while idle
                connection.close()
        connection = self._connections.connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=120)
        return self._post_on(connection, body, signature)

    @staticmethod
    def _post_on(connection: http.client.HTTPConnection, body: bytes,
                 signature: str) -> Tuple[int, bytes]:
        connection.request("POST", "/v2", body, {
            "Content-Type": "application/json", "Content-Encoding": "gzip",
            "Date": formatdate(usegmt=True), "X-Signature": signature})
        response = connection.getresponse()
        return response.status, response.read()

    def stop(self) -> None:
        stop_process(self.process, grace=15)
        os.unlink(self.log.name)


def measure(server: Server, batches: List[Tuple[bytes, str]], per_batch: int,
            clients: int = 2, answers: Sequence[int] = (200,)) -> Tuple[float, float]:
    """(CPU µs per event, events/s) of ``server`` taking ``batches`` from ``clients`` threads.

    :param answers: the statuses expected (the reference collector reads only the
        sample schema: it decodes every event of another and answers 422).
    """
    for body, signature in batches[:2]:  # warm-up: imports, the producer, the file
        status, answer = server.post(body, signature)
        if status not in answers:
            raise RuntimeError(f"warm-up batch answered {status}: {answer[:300]!r}")
    timed = batches[2:]
    threads, statuses = client_threads(server.post, timed, clients)
    cpu_start, start = cpu_seconds(server.pid), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.monotonic() - start, cpu_seconds(server.pid) - cpu_start
    bad = [answer for answer in statuses if answer[0] not in answers]
    if bad:
        raise RuntimeError(f"answers {bad[0][0]}: {bad[0][1][:300]!r}")
    events = len(timed) * per_batch
    return cpu / events * 1e6, events / seconds


def collector_command(row: str, mix: Mix, workdir: Path, bootstrap: str) -> List[str]:
    sink, _, schema = row.partition("+")
    command = [sys.executable, "-m", "baseplate_events.collector", "--port", "0",
               "--key", f"{KEY_NAME}={base64.b64encode(SECRET).decode()}", "--sink", sink]
    if sink == "kafka":
        command += ["--option", f"kafka.bootstrap_servers={bootstrap}"]
    elif sink == "jsonl":
        (workdir / "jsonl").mkdir(mode=0o700, exist_ok=True)
        command += ["--option", f"jsonl.directory={workdir / 'jsonl'}"]
    else:
        command += ["--option", f"sqlite.path={workdir / 'events.sqlite3'}"]
    if schema:
        command += ["--schema", mix.schema]
    return command


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collector_table")
    parser.add_argument("--mix", choices=("varied", "sample"), default="varied")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--reference", metavar="PATH",
                        help="a checkout whose python -m demo_app.collector --db FILE to run too")
    parser.add_argument("--before", metavar="PATH",
                        help="a checkout whose collector runs every row too (before and after)")
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"--rows: unknown {', '.join(sorted(unknown))}; choose from {', '.join(ROWS)}")
    from demo_app.tansu import TansuBroker

    mix = Mix(args.mix)
    per_row = args.events + 2 * args.batch
    labels = rows + ([f"before:{row}" for row in rows] if args.before else []) + (
        ["reference"] if args.reference else [])
    results: Dict[str, List[Tuple[float, float]]] = {label: [] for label in labels}
    seed = 1000
    floors: List[float] = []
    with tempfile.TemporaryDirectory(prefix="bpe-table-") as top:
        with TansuBroker.start(Path(top)) as broker:
            for _ in range(args.repeat):
                for label in labels:  # interleaved: the same drift for every row
                    seed += 1
                    events = mix.pool(per_row, seed)
                    floors.append(floor_us(events))
                    workdir = Path(tempfile.mkdtemp(dir=top))
                    if label == "reference":
                        command = [sys.executable, "-m", "demo_app.collector", "--port", "0",
                                   "--key", f"{KEY_NAME}={base64.b64encode(SECRET).decode()}",
                                   "--db", str(workdir / "reference.sqlite3")]
                        server = Server(command, args.reference, workdir)
                    elif label.startswith("before:"):
                        server = Server(collector_command(label.split(":", 1)[1], mix, workdir,
                                                          broker.bootstrap),
                                        f"{args.before}:{HERE}", workdir)
                    else:
                        server = Server(collector_command(label, mix, workdir, broker.bootstrap),
                                        HERE, workdir)
                    answers = (200, 422) if label == "reference" and mix.name != "sample" else (
                        200,)
                    try:
                        results[label].append(measure(server, bodies(events, args.batch),
                                                      args.batch, answers=answers))
                    finally:
                        server.stop()
                        shutil.rmtree(workdir, ignore_errors=True)
    sample = mix.pool(2000, 7)
    floor = statistics.median(floors)
    size = sum(map(len, sample)) / len(sample)
    print(f"mix {mix.name}: {size:.0f} bytes of TJSON per event, batches of {args.batch}, "
          f"{args.events} events per row, {args.repeat} run(s) each (median)")
    print(f"{'collector':<38} {'CPU/event':>10} {'events/s':>9} {'x floor':>8}")
    reference = None
    if args.reference:
        reference = statistics.median(cpu for cpu, _ in results["reference"])
    for label in labels:
        cpu = statistics.median(c for c, _ in results[label])
        rate = statistics.median(r for _, r in results[label])
        before, _, row = label.rpartition(":")
        sink, _, schema = row.partition("+")
        name = ("reference: demo_app.collector --db FILE" + (" (422s)" if mix.name != "sample"
                                                              else "") if label == "reference"
                else ("before: " if before else "") + f"{sink} sink"
                + (", --schema" if schema else ""))
        extra = f"  {cpu / reference:.2f}x reference" if reference and label != "reference" else ""
        print(f"{name:<38} {cpu:8.1f} µs {rate:9,.0f} {cpu / floor:7.2f}x{extra}")
    print(f"{'floor: msgspec.json.decode per event':<38} {floor:8.1f} µs "
          f"(median of {len(floors)} best-of-5)")
    print(f"{'Thrift TJSONProtocol into the classes':<38} {thrift_us(sample, mix.cls):8.1f} µs")
    print(f"{'a wake-up round trip of two threads':<38} {wakeup_us():8.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
