"""The collector as a service: health, readiness, one id per uuid, 422 never 500, settings,
the command line, and gunicorn with two workers."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from baseplate_events.collector.service.settings import parse_settings
from baseplate_events.errors import ConfigError
from demo_app.collector import DemoCollector, make_server
from tests.system.test_collector import NOW, SECRET, FakeClock, post, v1_batch, v2_batch, v2_event
from tests.support.processes import reap, serving_collector, signed_post

pytestmark = pytest.mark.system

REPO = str(Path(__file__).resolve().parent.parent.parent)


@pytest.fixture
def collector() -> Iterator[DemoCollector]:
    with make_server(keys={"demo": SECRET}, clock=FakeClock()) as c:
        yield c


def raw_request(url: str, request: bytes) -> bytes:
    """Send bytes as they are and return the whole answer (the server closes)."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# -- health and readiness ------------------------------------------------------------


def test_healthz_answers_ok(collector: DemoCollector) -> None:
    """GET /healthz: 200 ok while the process serves."""
    response = requests.get(collector.url + "/healthz", timeout=10)
    assert (200, "ok\n") == (response.status_code, response.text)


def test_readyz_answers_ready_while_the_sink_takes_batches(collector: DemoCollector) -> None:
    """GET /readyz: 200 ready with a working sink."""
    response = requests.get(collector.url + "/readyz", timeout=10)
    assert (200, "ready\n") == (response.status_code, response.text)


def test_readyz_fails_while_the_sink_is_unavailable(collector: DemoCollector) -> None:
    """GET /readyz: 503 with Retry-After once the sink cannot take a batch."""
    collector.store.close()
    response = requests.get(collector.url + "/readyz", timeout=10)
    assert (503, "the sink is unavailable\n", "5") == (
        response.status_code, response.text, response.headers["Retry-After"])


# -- one id per uuid -----------------------------------------------------------------------


def test_every_spelling_of_a_uuid_is_stored_once(collector: DemoCollector) -> None:
    """Braces, urn:uuid:, upper case and bare hex de-duplicate against the canonical uuid."""
    canonical = str(uuid.uuid4())
    spellings = [canonical, "{%s}" % canonical, "urn:uuid:" + canonical, canonical.upper(),
                 canonical.replace("-", "")]
    for spelling in spellings:
        item = json.loads(v1_batch(1))[0]
        item["uuid"] = spelling
        assert 200 == post(collector, "/v1", json.dumps([item]).encode()).status_code
    assert [(canonical, 5)] == [(e["uuid"], e["receipts"]) for e in collector.store.events()]


# -- never 500 --------------------------------------------------------------------------------


def test_a_value_sqlite_cannot_store_is_a_422_for_that_event(collector: DemoCollector) -> None:
    """An event_ts past 64 bits: 422 naming the event, the other event not stored either."""
    items = json.loads(v1_batch(2))
    items[1]["event_ts"] = 2**70
    response = post(collector, "/v1", json.dumps(items).encode())
    assert (422, [{"index": 1, "uuid": items[1]["uuid"],
                   "reason": "SQLite cannot store this event: Python int too large to convert "
                             "to SQLite INTEGER"}]) == (response.status_code,
                                                        response.json()["refused"])
    assert 0 == collector.store.summary()["total"]


def test_a_lone_surrogate_is_a_422_not_a_500(collector: DemoCollector) -> None:
    """A v1 event_topic holding a lone surrogate (json.loads makes one): 422 with the reason."""
    item = json.loads(v1_batch(1))[0]
    body = json.dumps([item]).replace('"signup"', '"sign\\ud800up"').encode()
    response = post(collector, "/v1", body)
    assert 422 == response.status_code
    assert response.json()["refused"][0]["reason"].startswith(
        "SQLite cannot store this event: 'utf-8' codec can't encode character '\\ud800'")


def test_a_malformed_content_length_is_a_400(collector: DemoCollector) -> None:
    """Content-Length: 12abc gets an HTTP 400, not a dropped connection."""
    answer = raw_request(collector.url, b"POST /v2 HTTP/1.1\r\nHost: x\r\n"
                                        b"Content-Length: 12abc\r\n\r\n" + b"x" * 12)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_refused_events_are_listed_with_their_reasons(collector: DemoCollector) -> None:
    """/api/events lists each refused event: stream, index, uuid, reason."""
    good, bad = v2_event(), v2_event()
    body = v2_batch([good, bad]).replace(bad.uuid.encode(), b"not-a-uuid")
    assert 422 == post(collector, "/v2", body).status_code
    document = requests.get(collector.url + "/api/events", timeout=10).json()
    assert [{"received_ms": int(NOW * 1000), "stream": "v2", "index": 1, "uuid": None,
             "reason": "no top-level string field holds a UUID; give the uuid field's id with "
                       "--uuid-field ID (or --schema module:Struct with a 'uuid' field)"}
            ] == document["refused"]


def test_a_posted_batch_is_not_taken_by_get(collector: DemoCollector) -> None:
    """GET on a batch path: 405 with Allow: POST."""
    response = requests.get(collector.url + "/v2", timeout=10)
    assert (405, "POST") == (response.status_code, response.headers["Allow"])


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"keys": "a=YQ==", "sink": "mysql"},
     "sink: expected one of sqlite, jsonl, kafka, got 'mysql'"),
    ({"keys": "a=YQ==", "max_boddy": "1"}, "max_boddy: unknown setting (did you mean max_body?); "
                                           "known: keys, max_body, "
                                           "publisher_config, replay_window, retry_after, schema, "
                                           "sink, uuid_field and <sink>.<option>"),
    ({}, "keys: no signing keys: give keys (NAME=BASE64) or publisher_config"),
    ({"keys": "a=!!"}, "keys: the secret of key 'a' is not base64"),
    ({"keys": "a=YQ==", "uuid_field": "three"},
     "uuid_field: expected a Thrift field id (an i16), got 'three'"),
    ({"keys": "a=YQ==", "max_body": "lots"}, "max_body: expected a positive integer, got 'lots'"),
])
def test_a_bad_setting_is_refused_naming_the_key(settings: Dict[str, Any], message: str) -> None:
    """Every settings error names the key and what it takes."""
    with pytest.raises(ConfigError) as raised:
        parse_settings(settings)
    assert message == str(raised.value)


def test_settings_keep_the_chosen_sinks_options_only() -> None:
    """sink = jsonl takes the jsonl.* options, prefix stripped."""
    parsed = parse_settings({"keys": "a=YQ== b=Yg==", "sink": "jsonl", "jsonl.directory": "/d",
                             "sqlite.path": "x"})
    assert ({"a": b"a", "b": b"b"}, {"directory": "/d"}) == (dict(parsed.keys),
                                                            dict(parsed.sink_options))


# -- processes ------------------------------------------------------------------------------


def test_a_forked_process_makes_its_own_sink(tmp_path: Path) -> None:
    """After a fork (gunicorn --preload) the child uses a new sink, not the parent's connection."""
    from baseplate_events.collector.service.app import make_configurator

    collector = make_configurator({"keys": {"demo": SECRET}, "sqlite.path": str(tmp_path / "db")}
                                  ).registry["collector"]
    parent_sink = collector.sink
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only with a sink of its own that works
        try:
            os._exit(0 if collector.sink is not parent_sink and collector.sink.ready() else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    collector.close()
    assert (0, True) == (os.waitstatus_to_exitcode(status), collector.sink is parent_sink)


def wait_for_port(process: subprocess.Popen, log: Path, timeout: float = 20.0) -> int:
    """The port gunicorn says it listens on (its log's 'Listening at' line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "Listening at: http://127.0.0.1:" in line:
                return int(line.rsplit(":", 1)[1].split()[0])
        assert process.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"gunicorn did not start: {log.read_text()}")


def test_the_command_line_serves_a_jsonl_sink_and_stops_on_sigterm(tmp_path: Path) -> None:
    """python -m baseplate_events.collector --sink jsonl takes a batch; SIGTERM ends the file."""
    with serving_collector(
        "baseplate_events.collector", "--port", "0",
        "--key", "demo=" + base64.b64encode(SECRET).decode(), "--sink", "jsonl",
        "--option", f"jsonl.directory={tmp_path / 'out'}",
    ) as url:
        event = v2_event()
        response = signed_post(url, "/v2j", b"[" + json_event(event) + b"]", SECRET)
        assert 200 == response.status_code
    files = sorted(os.listdir(tmp_path / "out"))
    assert 1 == len(files) and files[0].startswith("v2j-") and files[0].endswith(".jsonl")
    line_out = json.loads((tmp_path / "out" / files[0]).read_text())
    assert (event.uuid, "v2j", event.action) == (
        line_out["uuid"], line_out["stream"], line_out["event"]["2"]["str"])


def json_event(event: Any) -> bytes:
    from baseplate_events import serialize_v2_event

    return serialize_v2_event(event)  # type: ignore[no-any-return]


@pytest.mark.parametrize("preload", [[], ["--preload"]], ids=["", "preload"])
def test_gunicorn_with_two_workers_stores_every_batch_once(
    tmp_path: Path, preload: List[str]
) -> None:
    """gunicorn -w 2 over one SQLite file: 40 concurrent batches, every event stored once.

    With --preload the app is made before the fork; each worker makes its own sink."""
    db = tmp_path / "events.sqlite3"
    settings = {"keys": {"demo": SECRET}, "sink": "sqlite", "sqlite.path": str(db)}
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", *preload,
             "--graceful-timeout", "5", f"baseplate_events.collector:make_app({settings!r})"],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{wait_for_port(process, log)}"
        workers = _children(process.pid)
        deadline = time.monotonic() + 30  # a loaded machine boots the second worker late
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = _children(process.pid)
        events: List[Any] = [v2_event() for _ in range(40)]
        answers: List[int] = []

        def send(event: Any) -> None:
            answers.append(signed_post(url, "/v2", v2_batch([event]), SECRET).status_code)

        threads = [threading.Thread(target=send, args=(e,)) for e in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        ready = requests.get(url + "/readyz", timeout=10).status_code
        bad_length = raw_request(url, b"POST /v2 HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 1x\r\n\r\nx")
        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(timeout=20), log.read_text()
    finally:
        reap(process)
    import sqlite3

    with sqlite3.connect(db) as connection:
        rows = dict(connection.execute("SELECT uuid, receipts FROM events").fetchall())
    assert ([200] * 40, 200, 2) == (answers, ready, len(workers)), log.read_text()
    assert {e.uuid: 1 for e in events} == rows
    assert bad_length.startswith(b"HTTP/1.1 400 "), bad_length[:200]


def _children(pid: int) -> List[int]:
    """The processes whose parent is ``pid`` (gunicorn's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found
