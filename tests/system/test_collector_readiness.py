"""/readyz tells the truth: 503 from a failed write, probes of the sink at most every 2 s,
ready again once a probe succeeds without any batch; a sink's wait is bounded."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import List, Tuple

import pytest
import requests

from tests.conftest import fill_disk
from tests.support.service import CollectorProcess, post_batch, v1_event

pytestmark = pytest.mark.system

PROBE_LINE = "collector: the sink is still unavailable: "


def big_event(number: int) -> bytes:
    event = json.loads(v1_event(number))
    event["payload"]["pad"] = "x" * 20_000
    return json.dumps(event).encode()


def fill_until_503(url: str) -> Tuple[int, float]:
    """POST 200 KB batches until one is answered 503; how many were taken, and that one's time."""
    for taken in range(200):
        started = time.monotonic()
        response = post_batch(url, [big_event(n) for n in range(10)], timeout=10)
        if response.status_code == 503:
            return taken, time.monotonic() - started
        assert 200 == response.status_code, response.text
    raise AssertionError("the disk never filled")


def poll_ready(url: str, seconds: float) -> List[Tuple[float, int]]:
    """GET /readyz every 0.1 s for ``seconds``: (time since start, status) of each."""
    answers = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        answers.append((time.monotonic() - started,
                        requests.get(url + "/readyz", timeout=5).status_code))
        time.sleep(0.1)
    return answers


def ready_again_after(url: str, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while requests.get(url + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() - started < timeout, "never ready again"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize("sink", ["sqlite", "jsonl"])
def test_a_full_disk_makes_readyz_503_until_a_probe_succeeds(
    small_disk: str, tmp_path: Path, sink: str
):
    """Disk full: batches 503 and /readyz 503 (probes every 2 s at most); space freed: ready
    again within 2 s and a probe, with no batch sent."""
    option = (f"sqlite.path={small_disk}/events.sqlite3" if sink == "sqlite"
              else f"jsonl.directory={small_disk}/events")
    log = tmp_path / "collector.log"
    with CollectorProcess("--sink", sink, "--option", option, log=log) as collector:
        assert 200 == post_batch(collector.url, [v1_event(0)]).status_code
        filler = os.path.join(small_disk, "filler")
        fill_disk(filler)
        _, took = fill_until_503(collector.url)
        probes_before = log.read_text().count(PROBE_LINE)
        while_full = poll_ready(collector.url, 5.0)
        probes = log.read_text().count(PROBE_LINE) - probes_before
        os.unlink(filler)
        again = ready_again_after(collector.url)
        assert 200 == post_batch(collector.url, [v1_event(1)]).status_code
        assert 0 == collector.stop()
    print(f"FIGURE {sink} full disk: 503 after {took:.2f} s; /readyz "
          f"{sorted({s for _, s in while_full})} over 5 s with {probes} probes; ready "
          f"{again:.2f} s after space came back")
    assert {503} == {status for _, status in while_full}
    assert 1 <= probes <= 3  # at most one every 2 s, over 5 s of polling every 0.1 s
    assert again < 2.0 + 1.0


def test_a_locked_database_is_answered_503_within_the_sinks_bound(tmp_path: Path):
    """Another process holds the database: the batch is a 503 after 2.5 s, not a hang."""
    db = tmp_path / "events.sqlite3"
    with CollectorProcess("--option", f"sqlite.path={db}") as collector:
        assert 200 == post_batch(collector.url, [v1_event(0)]).status_code
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            response = post_batch(collector.url, [v1_event(1)])
            took = time.monotonic() - started
            ready_while_locked = requests.get(collector.url + "/readyz", timeout=5).status_code
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        again = ready_again_after(collector.url)
        assert 0 == collector.stop()
    print(f"FIGURE sqlite locked: 503 after {took:.2f} s; ready {again:.2f} s after the lock went")
    assert (503, 503) == (response.status_code, ready_while_locked)
    assert response.json()["error"].startswith("the sink is unavailable: sqlite: ")
    assert 2.4 < took < 3.0
    assert again < 3.0
