"""The JSONL sink: whole lines only, atomic rotation by size and age, recovery after a kill."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

from baseplate_events.collector.sinks import STORED, SinkUnavailable, StoredEvent
from baseplate_events.collector.sinks.jsonl import JSONLSink, create
from baseplate_events.errors import ConfigError


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(text: str = "x") -> StoredEvent:
    return StoredEvent(str(uuid.uuid4()), "2j", b'{"1":{"str":"%s"}}' % text.encode(), {1: text},
                       1_800_000_000_000)


def finished(directory: Path) -> List[Path]:
    return sorted(directory.glob("*.jsonl"))


def lines(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink(tmp_path: Path, clock: FakeClock) -> Iterator[JSONLSink]:
    s = JSONLSink(str(tmp_path), max_bytes=400, max_seconds=60, clock=clock)
    yield s
    s.close()


def test_a_line_holds_the_uuid_stream_time_and_the_event_as_received(
    sink: JSONLSink, tmp_path: Path
) -> None:
    """One line per event: uuid, stream, received_ms and the raw event JSON."""
    stored = event()
    assert [STORED] == sink.store("v2j", [stored])
    sink.close()
    assert [{"uuid": stored.uuid, "stream": "v2j", "received_ms": 1_800_000_000_000,
             "event": {"1": {"str": "x"}}}] == lines(finished(tmp_path)[0])


def test_a_file_is_not_visible_as_jsonl_until_rotated(sink: JSONLSink, tmp_path: Path) -> None:
    """While written, the file is *.jsonl.part; readers take *.jsonl only."""
    sink.store("v2", [event()])
    assert ([], 1) == (finished(tmp_path), len(list(tmp_path.glob("*.jsonl.part"))))


def test_a_file_rotates_when_it_reaches_max_bytes(sink: JSONLSink, tmp_path: Path) -> None:
    """Past jsonl.max_bytes the file is renamed to *.jsonl and a new one begins."""
    for _ in range(6):  # each line is about 130 bytes: the 4th passes 400
        sink.store("v2", [event()])
    done = finished(tmp_path)
    assert ([4], 1) == ([len(lines(p)) for p in done], len(list(tmp_path.glob("*.part"))))


def test_a_file_rotates_once_older_than_max_seconds(
    sink: JSONLSink, tmp_path: Path, clock: FakeClock
) -> None:
    """At the readiness probe after jsonl.max_seconds, the file is rotated."""
    sink.store("v2", [event()])
    clock.now += 61
    assert sink.ready()
    assert ([1], []) == ([len(lines(p)) for p in finished(tmp_path)],
                         list(tmp_path.glob("*.part")))


def test_each_stream_has_its_own_file(sink: JSONLSink, tmp_path: Path) -> None:
    """v1, v2 and v2j events go to files named for their stream."""
    for stream in ("v1", "v2", "v2j"):
        sink.store(stream, [event()])
    sink.close()
    assert ["v1", "v2", "v2j"] == [p.name.split("-")[0] for p in finished(tmp_path)]


def test_a_dead_writers_file_is_finished_and_its_half_line_cut(tmp_path: Path) -> None:
    """A .part left by a killed process: the next sink cuts the half line and renames it."""
    part = tmp_path / "v2-20270115T080000Z-host-99999-1.jsonl.part"
    part.write_bytes(b'{"uuid":"a","stream":"v2","received_ms":1,"event":{}}\n{"uuid":"b","str')
    JSONLSink(str(tmp_path)).close()
    done = tmp_path / "v2-20270115T080000Z-host-99999-1.jsonl"
    assert ([done], ["a"]) == (finished(tmp_path), [line["uuid"] for line in lines(done)])


def test_a_live_writers_file_is_left_alone(tmp_path: Path) -> None:
    """A .part another process holds locked is not touched by a second sink."""
    part = tmp_path / "v2-20270115T080000Z-host-1-1.jsonl.part"
    part.write_bytes(b'{"uuid":"a","half')
    with open(part, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        JSONLSink(str(tmp_path)).close()
        assert (b'{"uuid":"a","half', []) == (part.read_bytes(), finished(tmp_path))


def test_an_unknown_option_is_refused() -> None:
    """jsonl.* takes directory, max_bytes, max_seconds, fsync, mode and timeout only."""
    with pytest.raises(ConfigError) as raised:
        create({"directory": "/tmp", "rotate": "daily"})
    assert ("jsonl.rotate: unknown option; known: jsonl.directory, jsonl.max_bytes, "
            "jsonl.max_seconds, jsonl.fsync, jsonl.mode, jsonl.timeout") == str(raised.value)


def test_the_directory_is_required() -> None:
    """sink = jsonl without jsonl.directory says so."""
    with pytest.raises(ConfigError) as raised:
        create({})
    assert "jsonl.directory: required with sink = jsonl" == str(raised.value)


@pytest.mark.system
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_a_503_and_leaves_no_half_line(tmp_path: Path) -> None:
    """On a full tmpfs: SinkUnavailable, the file cut back to whole lines; then it resumes."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    sink = JSONLSink(str(mount / "out"))
    try:
        sink.store("v2", [event()])
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        batch = [event("y" * 2000) for _ in range(10)]
        with pytest.raises(SinkUnavailable):
            sink.store("v2", batch)
        part = next((mount / "out").glob("*.part"))
        after_failure = len(lines(part))
        filler.unlink()
        sink.store("v2", batch)
        sink.close()
        assert (1, 11) == (after_failure, len(lines(finished(mount / "out")[0])))
    finally:
        sink.close()
        # Lazy: detaches the mount even if a failed assertion left a descriptor open.
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_the_app_stores_a_lone_surrogate_of_a_batch_parsed_whole_as_valid_json(
    tmp_path: Path,
) -> None:
    """POST /v2 with "\\u0072ec" and "\\ud800": 200, not 503; the line is JSON with the escape."""
    import base64
    import email.utils
    import gzip
    import time

    from webtest import TestApp

    from baseplate_events.collector import make_app
    from baseplate_events.collector.service.intake import sign

    secret = b"a jsonl collector test secret..."
    wsgi = make_app({"keys": f"demo={base64.b64encode(secret).decode()}", "sink": "jsonl",
                     "jsonl.directory": str(tmp_path)})
    event_uuid = str(uuid.uuid4())
    body = (b'{"1":{"lst":["\\u0072ec",1,{"1":{"str":"%s"},"2":{"str":"\\ud800"}}]}}'
            % event_uuid.encode())
    response = TestApp(wsgi).post("/v2", gzip.compress(body), expect_errors=True, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(time.time(), usegmt=True),
        "X-Signature": f"key=demo, mac={sign(secret, body)}"})
    wsgi.registry["collector"].sink.close()
    (path,) = finished(tmp_path)
    assert (200, [{"1": {"str": event_uuid}, "2": {"str": "\ud800"}}]) == (
        response.status_int, [line["event"] for line in lines(path)])
    escaped = b'"2":{"str":"\\ud800"}}}\n'  # as the fast split keeps it
    assert escaped == path.read_bytes()[-len(escaped):]
