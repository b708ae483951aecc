"""What each answer of the real collector means, with the real publisher in front of it.

Every test runs ``python -m publisher`` (a subprocess) against ``python -m
baseplate_events.collector`` (waitress, a subprocess) or the same app under
gunicorn, and shows, with figures, that no event can stall a queue: a problem
that belongs to one event is that event's 422 (the publisher sets it aside
once the others are accepted), a malformed request is a 4xx with a reason,
and a hostile body costs no more CPU before the signature than an honest one.
"""
from __future__ import annotations

import email.utils
import glob
import gzip
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import pytest
import requests

from baseplate_events import Event as V1Event
from baseplate_events import serialize_v1_event, serialize_v2_event
from baseplate_events.collector.service.intake import sign
from baseplate_events.mqueue.posix import MessageQueue
from event_schemas.event.ttypes import Event
from publisher.send.dead_letters import DeadLetter, read
from tests.conftest import TEST_MAX_MESSAGE_SIZE
from tests.support.kafka import GunicornCollector
from tests.support.processes import LISTENING, REPO, reap
from tests.support.publisher import SECRET, SECRET_B64, PublisherProcess, put_all

pytestmark = pytest.mark.system

KEY = f"TestKey={SECRET_B64}"


class Served:
    """A collector subprocess: its URL, its pid, and its stderr (the log)."""

    def __init__(self, url: str, process: "subprocess.Popen[str]", log_path: Path) -> None:
        self.url = url
        self.process = process
        self.log_path = log_path

    @property
    def hostname(self) -> str:
        return self.url.split("://", 1)[1]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far (from /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def waitress_collector(tmp_path: Path, *args: str) -> Iterator[Served]:
    """``python -m baseplate_events.collector --port 0`` with the publisher's test key."""
    log_path = tmp_path / "collector.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "baseplate_events.collector", "--port", "0", "--key", KEY,
             "--threads", "4", *args],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(LISTENING), line + log_path.read_text()
        yield Served(line.split()[3], process, log_path)
        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(timeout=15)
    finally:
        reap(process)


@pytest.fixture
def queue(queue_name: str, open_queues: Callable[..., MessageQueue]) -> MessageQueue:
    """The publisher's queue: 10 messages of 8192 bytes (a deep v1 event takes 2 KiB)."""
    return open_queues("/events-" + queue_name, 10, TEST_MAX_MESSAGE_SIZE)


def publisher(publisher_for: Callable[..., PublisherProcess], served: Served,
              version: str) -> PublisherProcess:
    return publisher_for(served.hostname, **{
        "collector.version": version, "max_event_size": str(TEST_MAX_MESSAGE_SIZE),
        "collector.timeout": "5"}).start()


def v2_event() -> bytes:
    return serialize_v2_event(Event(source="shop", action="view", noun="page",
                                    client_timestamp=int(time.time() * 1000),
                                    uuid=str(uuid.uuid4())))


def v1_event(payload: bytes = b'{"n":1}') -> bytes:
    """A v1 event as ``serialize_v1_event`` writes it, with ``payload`` (JSON) as its payload."""
    event = V1Event("shop", "view")
    event.set_field("n", 1)
    document = json.loads(serialize_v1_event(event))
    document["payload"] = "PAYLOAD"
    return json.dumps(document, separators=(",", ":")).encode().replace(b'"PAYLOAD"', payload)


def uuid_of(event: bytes) -> str:
    document = json.loads(event)
    return str(document["uuid"] if "uuid" in document else document["5"]["str"])


def jsonl_uuids(directory: Path) -> Set[str]:
    """The uuid of every line the JSONL sink wrote so far (rotated files and open ones)."""
    found: Set[str] = set()
    for path in glob.glob(str(directory / "*.jsonl*")):
        for line in Path(path).read_bytes().splitlines():
            found.add(json.loads(line)["uuid"])
    return found


def sqlite_uuids(path: Path) -> Set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT uuid FROM events")}


def dead_lettered(tmp_path: Path) -> List[bytes]:
    path = tmp_path / "spool" / "dead-letter.jsonl"
    if not path.exists():
        return []
    return [letter.event for letter in read(str(path)) if isinstance(letter, DeadLetter)]


def wait_until(done: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``done()`` (polled), or ``timeout`` if never."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if done():
            return time.monotonic() - started
        time.sleep(0.1)
    return timeout


def run_one_poison_among_good(
    tmp_path: Path, queue: MessageQueue, publisher_for: Callable[..., PublisherProcess],
    served: Served, version: str, good: List[bytes], poison: bytes, poison_uuid: str,
    stored: Callable[[], Set[str]],
) -> str:
    """Put half the good events, the poison, the rest; the figures once all settled."""
    pub = publisher(publisher_for, served, version)
    half = len(good) // 2
    put_all(queue, good[:half] + [poison] + good[half:])
    wanted = {uuid_of(e) for e in good}
    waited = wait_until(lambda: wanted <= stored() and poison in dead_lettered(tmp_path), 30)
    pub.stop()
    delivered = len(wanted & stored())
    return (f"{delivered} of {len(good)} good events delivered in {waited:.1f} s; poison "
            f"dead-lettered: {poison in dead_lettered(tmp_path)}; poison stored: "
            f"{poison_uuid in stored()}")


@pytest.mark.parametrize("spelling", ["urn:uu\u0130d:", "urn:uu\u0131d:"])
def test_a_uuid_spelled_with_a_dotted_or_dotless_i_stalls_nothing_on_jsonl(
    tmp_path: Path, queue: MessageQueue, publisher_for: Callable[..., PublisherProcess],
    spelling: str,
) -> None:
    """jsonl, no --schema: the one event is a 422, all 20 good ones land, it is set aside."""
    directory = tmp_path / "events"
    poison_uuid = str(uuid.uuid4())
    poison = b'{"1":{"str":"shop"},"5":{"str":"%s"}}' % (spelling + poison_uuid).encode()
    good = [v2_event() for _ in range(20)]
    with waitress_collector(tmp_path, "--sink", "jsonl",
                            "--option", f"jsonl.directory={directory}") as served:
        figures = run_one_poison_among_good(tmp_path, queue, publisher_for, served, "2j",
                                            good, poison, poison_uuid,
                                            lambda: jsonl_uuids(directory))
        log = served.log()
    print(figures)  # the figures, with pytest -s
    assert ("20 of 20 good events delivered" in figures
            and "poison dead-lettered: True" in figures), figures
    assert "Traceback" not in log, log


def test_a_uuid_spelled_with_a_dotted_i_stalls_nothing_on_kafka(
    tmp_path: Path, queue: MessageQueue, publisher_for: Callable[..., PublisherProcess],
    kafka_broker: Any, kafka_topics: Dict[str, str],
) -> None:
    """kafka, no --schema: the one event is a 422, all 20 good ones reach the topic."""
    from demo_app.tansu import count_keys, read_topics

    poison_uuid = str(uuid.uuid4())
    poison = b'{"1":{"str":"shop"},"5":{"str":"%s"}}' % ("urn:uu\u0130d:" + poison_uuid).encode()
    good = [v2_event() for _ in range(20)]

    seen: Set[str] = set()

    def stored() -> Set[str]:  # what each read found: a short read may miss some
        seen.update(count_keys(read_topics(kafka_broker.bootstrap, [kafka_topics["v2j"]],
                                           idle=0.2)))
        return seen

    with waitress_collector(tmp_path, "--sink", "kafka",
                            "--option", f"kafka.bootstrap_servers={kafka_broker.bootstrap}",
                            *[f"--option=kafka.topic.{stream}={topic}"
                              for stream, topic in kafka_topics.items()]) as served:
        figures = run_one_poison_among_good(tmp_path, queue, publisher_for, served, "2j",
                                            good, poison, poison_uuid, stored)
        log = served.log()
    print(figures)
    assert ("20 of 20 good events delivered" in figures
            and "poison dead-lettered: True" in figures), figures
    assert "Traceback" not in log, log


def test_a_v1_event_nested_970_deep_stalls_nothing_on_sqlite(
    tmp_path: Path, queue: MessageQueue, publisher_for: Callable[..., PublisherProcess],
) -> None:
    """sqlite: the deep event is a 422 (nesting is capped at 64), all 10 good ones land."""
    database = tmp_path / "events.db"
    poison = v1_event(b'{"deep":' + b"[" * 970 + b"]" * 970 + b"}")
    poison_uuid = json.loads(poison[:poison.index(b'"payload"')] + b'"x":0}')["uuid"]
    good = [v1_event() for _ in range(10)]
    with waitress_collector(tmp_path, "--sink", "sqlite",
                            "--option", f"sqlite.path={database}") as served:
        figures = run_one_poison_among_good(tmp_path, queue, publisher_for, served, "1",
                                            good, poison, poison_uuid,
                                            lambda: sqlite_uuids(database))
        log = served.log()
    print(figures)
    assert ("10 of 10 good events delivered" in figures
            and "poison dead-lettered: True" in figures
            and "poison stored: False" in figures), figures
    assert "RecursionError" not in log, log


# -- bounded work before the signature --------------------------------------------------


def empty_members(size: int) -> bytes:
    """``size`` bytes of gzip members that hold nothing, unsigned."""
    member = gzip.compress(b"", mtime=0)
    return member * (size // len(member))


def post_hostile(url: str, body: bytes) -> int:
    response = requests.post(url + "/v2j", data=body, timeout=30, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(usegmt=True),
        "X-Signature": "key=TestKey, mac=" + "0" * 64})
    return response.status_code


def honest_post(url: str) -> float:
    """Seconds a signed one-event batch took to be answered 200."""
    body = b"[" + v2_event() + b"]"
    started = time.monotonic()
    response = requests.post(url + "/v2j", data=gzip.compress(body), timeout=30, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(usegmt=True),
        "X-Signature": f"key=TestKey, mac={sign(SECRET, body)}"})
    assert 200 == response.status_code, response.text
    return time.monotonic() - started


def test_a_body_of_empty_gzip_members_costs_no_cpu_and_delays_no_publisher(
    tmp_path: Path, queue: MessageQueue, publisher_for: Callable[..., PublisherProcess],
) -> None:
    """1 MiB of empty members: a 400 for next to no CPU; the publisher's 10 events land
    while four clients send such bodies."""
    database = tmp_path / "events.db"
    hostile = empty_members(1 << 20)
    with waitress_collector(tmp_path, "--sink", "sqlite",
                            "--option", f"sqlite.path={database}") as served:
        statuses = [post_hostile(served.url, hostile)]  # warm up: imports, first connection
        before = served.cpu_seconds()
        statuses += [post_hostile(served.url, hostile) for _ in range(5)]
        per_request = (served.cpu_seconds() - before) / 5
        stop = threading.Event()
        sent: List[int] = []

        def attack() -> None:
            while not stop.is_set():
                sent.append(post_hostile(served.url, hostile))

        attackers = [threading.Thread(target=attack, daemon=True) for _ in range(4)]
        for thread in attackers:
            thread.start()
        try:
            pub = publisher(publisher_for, served, "2j")
            good = [v2_event() for _ in range(10)]
            put_all(queue, good)
            waited = wait_until(lambda: {uuid_of(e) for e in good} <= sqlite_uuids(database),
                                30)
            pub.stop()
            latencies = sorted(honest_post(served.url) for _ in range(9))
        finally:
            stop.set()
            for thread in attackers:
                thread.join(60)
        delivered = len({uuid_of(e) for e in good} & sqlite_uuids(database))
    figures = (f"{per_request:.3f} s CPU per hostile request; {delivered} of 10 events "
               f"delivered in {waited:.1f} s beside {len(sent)} hostile requests; an honest "
               f"POST took {latencies[4] * 1000:.0f} ms (median of 9) meanwhile; "
               f"statuses {sorted(set(statuses + sent))}")
    print(figures)
    assert [400] == sorted(set(statuses + sent)), figures
    assert per_request < 0.05 and delivered == 10, figures


# -- malformed requests --------------------------------------------------------------------

MALFORMED = {
    "GET /%ff": b"GET /%ff HTTP/1.1\r\nHost: collector\r\n\r\n",
    "POST /v2j%ff": b"POST /v2j%ff HTTP/1.1\r\nHost: collector\r\nContent-Length: 2\r\n\r\n[]",
    "POST without Content-Length": b"POST /v2j HTTP/1.1\r\nHost: collector\r\n\r\n",
    "X-Signature not ASCII": (b"POST /v2j HTTP/1.1\r\nHost: collector\r\nContent-Length: 2\r\n"
                              b"X-Signature: key=\xff\xfe, mac=00\r\n\r\n[]"),
    "Date not ASCII": (b"POST /v2j HTTP/1.1\r\nHost: collector\r\nContent-Length: 2\r\n"
                       b"X-Signature: key=TestKey, mac=" + b"0" * 64 + b"\r\n"
                       b"Date: \xff\xff 99999\r\n\r\n[]"),
    "Content-Length with a sign": (b"POST /v2j HTTP/1.1\r\nHost: collector\r\n"
                                   b"Content-Length: +2\r\n\r\n[]"),
    "a chunk size that is no number": (b"POST /v2j HTTP/1.1\r\nHost: collector\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n"
                                       b"0\r\n\r\n"),
    "two Content-Lengths": (b"POST /v2j HTTP/1.1\r\nHost: collector\r\nContent-Length: 2\r\n"
                            b"Content-Length: 3\r\n\r\n[]"),
}


def raw_answer(url: str, request: bytes) -> bytes:
    """Send ``request`` as is; everything the server answers until it closes or goes quiet."""
    host, port = url.split("://", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        connection.settimeout(2)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            pass
    return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


Seen = Tuple[str, int, List[str], bytes]


def check_malformed(url: str) -> List[Seen]:
    """What each malformed request drew: (name, status, Connection headers, body)."""
    seen = []
    for name, request in MALFORMED.items():
        answer = raw_answer(url, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        connection = [line.decode("latin-1") for line in lines[1:]
                      if line.lower().startswith(b"connection:")]
        seen.append((name, status, connection, body))
    return seen


def error(body: bytes) -> str:
    return str(json.loads(body)["error"])


def assert_4xx_with_reasons(seen: List[Seen], log: str) -> None:
    """Every answer a 4xx with a body saying why; no traceback in the server's log."""
    assert all(400 <= status < 500 and body for _, status, _, body in seen), seen
    assert "Traceback" not in log, log


FIRST_THREE = [
    ("GET /%ff", 400, "the path b'/\\xff' is not UTF-8 once percent-decoded; POST to /v1, /v2 "
                      "or /v2j"),
    ("POST /v2j%ff", 400, "the path b'/v2j\\xff' is not UTF-8 once percent-decoded; POST to "
                          "/v1, /v2 or /v2j"),
    ("POST without Content-Length", 411, "missing Content-Length"),
]


def test_malformed_requests_are_4xx_with_reasons_under_waitress(
    tmp_path: Path, queue: MessageQueue, publisher_for: Callable[..., PublisherProcess],
) -> None:
    """Bad percent-encoding, no length, odd headers: 4xx with the reason and no hop-by-hop
    header, no traceback; the publisher's events still land."""
    database = tmp_path / "events.db"
    with waitress_collector(tmp_path, "--sink", "sqlite",
                            "--option", f"sqlite.path={database}") as served:
        seen = check_malformed(served.url)
        print(*seen, sep="\n")
        pub = publisher(publisher_for, served, "2j")
        good = [v2_event() for _ in range(5)]
        put_all(queue, good)
        wait_until(lambda: {uuid_of(e) for e in good} <= sqlite_uuids(database), 20)
        pub.stop()
        log = served.log()
    assert FIRST_THREE == [(name, status, error(body)) for name, status, _, body in seen[:3]]
    assert [[]] * 3 == [connection for _, _, connection, _ in seen[:3]]
    assert_4xx_with_reasons(seen, log)
    assert {uuid_of(e) for e in good} <= sqlite_uuids(database)


def test_malformed_requests_are_4xx_with_reasons_under_gunicorn(tmp_path: Path) -> None:
    """The same requests to the app under gunicorn: 4xx with a reason, no traceback."""
    settings = {"keys": KEY, "sink": "sqlite", "sqlite.path": str(tmp_path / "events.db")}
    served = GunicornCollector(settings, tmp_path / "gunicorn.log", workers=1)
    try:
        seen = check_malformed(served.url)
        print(*seen, sep="\n")
    finally:
        served.stop()
    assert FIRST_THREE == [(name, status, error(body)) for name, status, _, body in seen[:3]]
    assert_4xx_with_reasons(seen, served.log())
