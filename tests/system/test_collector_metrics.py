"""The collector's Prometheus metrics on a port of their own: under waitress, and under
gunicorn where the workers' figures add up, served once by the master."""
from __future__ import annotations

import email.utils
import gzip
import os
import sqlite3
import threading
from pathlib import Path
from typing import List, Set

import pytest
import requests

from tests.support.kafka import GunicornCollector
from tests.support.publisher import SECRET_B64
from tests.support.service import CollectorProcess, post_batch, scrape, v1_event

pytestmark = pytest.mark.system

P = "baseplate_events_collector_"
CONF = ["-c", "python:baseplate_events.collector.gunicorn_conf"]


def metrics_url(start_line: str) -> str:
    return start_line.split("metrics on ")[1].split(")")[0].strip()


def test_waitress_serves_every_figure_on_its_own_port(tmp_path: Path):
    """Batches accepted, duplicated, refused per event and whole, probes: each counted."""
    db = tmp_path / "events.sqlite3"
    with CollectorProcess("--option", f"sqlite.path={db}", "--metrics",
                          "127.0.0.1:0") as collector:
        url = metrics_url(collector.start_line)
        assert url.startswith("http://127.0.0.1:") and not url.startswith(collector.url)
        events = [v1_event(n) for n in range(3)]
        assert 200 == post_batch(collector.url, events).status_code
        assert 200 == post_batch(collector.url, events).status_code  # 3 duplicates
        assert 403 == post_batch(collector.url, events, secret=b"wrong").status_code
        assert 422 == post_batch(collector.url, [b'{"uuid": 1}', v1_event(9)]).status_code
        assert 200 == requests.get(collector.url + "/healthz", timeout=5).status_code
        body = b"[" + v1_event(4) + b"]"
        answer = requests.post(collector.url + "/v1", data=gzip.compress(body), timeout=5,
                               headers={"Content-Type": "application/json",
                                        "Content-Encoding": "gzip",
                                        "Date": email.utils.formatdate(usegmt=True)})
        assert 401 == answer.status_code
        figures = scrape(url)
        assert 0 == collector.stop()
    assert {
        P + 'requests_total{path="/v1",status="200"}': 2.0,
        P + 'requests_total{path="/v1",status="403"}': 1.0,
        P + 'requests_total{path="/v1",status="401"}': 1.0,
        P + 'requests_total{path="/v1",status="422"}': 1.0,
        P + 'requests_total{path="/healthz",status="200"}': 1.0,
        P + 'events_total{outcome="accepted"}': 3.0,
        P + 'events_total{outcome="duplicate"}': 3.0,
        P + 'events_refused_total{reason="invalid"}': 1.0,
        P + 'events_refused_total{reason="sink"}': 0.0,
        P + 'batches_refused_total{reason="signature"}': 1.0,
        P + 'batches_refused_total{reason="unsigned"}': 1.0,
        P + "batch_events_count": 2.0,
        P + "batch_events_sum": 6.0,
        P + "sink_store_seconds_count": 2.0,
        P + "sink_unavailable_total": 0.0,
        P + "sink_ready": 1.0,
    }.items() <= figures.items()


def test_sink_unavailability_is_counted_and_the_gauge_drops(tmp_path: Path):
    """A locked database: sink_unavailable_total counts the 503, sink_ready is 0 until a probe."""
    db = tmp_path / "events.sqlite3"
    with CollectorProcess("--option", f"sqlite.path={db}", "--metrics",
                          "127.0.0.1:0") as collector:
        url = metrics_url(collector.start_line)
        assert 200 == post_batch(collector.url, [v1_event(0)]).status_code
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            assert 503 == post_batch(collector.url, [v1_event(1)]).status_code
            during = scrape(url)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert 200 == post_batch(collector.url, [v1_event(2)]).status_code
        after = scrape(url)
        assert 0 == collector.stop()
    assert (1.0, 0.0, 2.0) == (during[P + "sink_unavailable_total"], during[P + "sink_ready"],
                               during[P + 'events_total{outcome="accepted"}'] + 1)
    assert 1.0 == after[P + "sink_ready"]
    assert during[P + 'sink_store_seconds_bucket{le="2.5"}'] < during[
        P + 'sink_store_seconds_bucket{le="5.0"}']


def gunicorn_with_metrics(tmp_path: Path, multiproc: "Path | None") -> GunicornCollector:
    """gunicorn -w 3 with the collector's settings; ``multiproc`` None: as the docs run it."""
    os.environ["BASEPLATE_EVENTS_COLLECTOR_METRICS"] = "127.0.0.1:0"
    if multiproc is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    try:
        return GunicornCollector({"keys": f"TestKey={SECRET_B64}",
                                  "sqlite.path": str(tmp_path / "events.sqlite3")},
                                 tmp_path / "gunicorn.log", workers=3, extra_args=CONF)
    finally:
        del os.environ["BASEPLATE_EVENTS_COLLECTOR_METRICS"]
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def send(url: str, count: int, answers: List[int]) -> None:
    """``count`` batches of two events, one after the other."""
    for n in range(count):
        answers.append(post_batch(url, [v1_event(n), v1_event(n)]).status_code)


def test_under_gunicorn_the_workers_figures_add_up_once_per_instance(tmp_path: Path):
    """gunicorn -w 3: rounds of 60 batches over 6 connections at once until two workers or
    more have served; the master's /metrics sums them, and a second run in the same
    directory starts from 0."""
    multiproc = tmp_path / "metrics"
    totals, expected = [], []
    for _ in range(2):
        gunicorn = gunicorn_with_metrics(tmp_path, multiproc)
        try:
            url = gunicorn.wait_for(r"collector metrics on (http://\S+) ")[0]
            answers: List[int] = []
            serving: Set[int] = set()
            # A worker that is still loading the app serves nothing: on a busy machine
            # one round can land on a single worker, so send until two have served.
            for _ in range(5):
                threads = [threading.Thread(target=send, args=(gunicorn.url, 10, answers))
                           for _ in range(6)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
                serving = {int(name.split("_")[-1].split(".")[0])
                           for name in os.listdir(multiproc) if name.startswith("counter_")}
                if len(serving) >= 2:
                    break
            figures = scrape(url)
        finally:
            assert 0 == gunicorn.stop()
        assert [200] * len(answers) == answers
        assert len(serving) >= 2  # several workers counted their share
        batches = float(len(answers))
        expected.append((batches, 2 * batches, batches))
        totals.append((figures[P + 'requests_total{path="/v1",status="200"}'],
                       figures[P + 'events_total{outcome="accepted"}'],
                       figures[P + "batch_events_count"]))
    print(f"FIGURE gunicorn -w 3 metrics: {totals} (requests, events, batches) per run")
    assert expected == totals


def test_without_prometheus_multiproc_dir_the_workers_figures_still_add_up(tmp_path: Path):
    """gunicorn -w 3 as the docs run it (no PROMETHEUS_MULTIPROC_DIR): the master sums it all."""
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    gunicorn = gunicorn_with_metrics(tmp_path, None)
    try:
        url = gunicorn.wait_for(r"collector metrics on (http://\S+) ")[0]
        answers: List[int] = []
        threads = [threading.Thread(target=send, args=(gunicorn.url, 5, answers))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        figures = scrape(url)
    finally:
        assert 0 == gunicorn.stop()
    assert [200] * 20 == answers
    assert (20.0, 40.0) == (figures.get(P + 'requests_total{path="/v1",status="200"}'),
                            figures.get(P + 'events_total{outcome="accepted"}'))


def test_a_bad_metrics_address_stops_the_start_naming_the_flag():
    """--metrics nowhere: exit 2 naming the flag and the form it takes."""
    result = CollectorProcess("--option", "sqlite.path=:memory:", "--metrics", "nowhere").run()
    assert 2 == result.returncode
    assert result.stderr.splitlines()[-1] == (
        "python -m baseplate_events.collector: error: argument --metrics: expected HOST:PORT "
        "(e.g. 127.0.0.1:9102), got 'nowhere'")


def test_a_metrics_port_in_use_stops_the_start_naming_it():
    """--metrics on a port another process listens on: exit 2 naming the address."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CollectorProcess("--option", "sqlite.path=:memory:", "--metrics",
                                  f"127.0.0.1:{port}").run()
    assert 2 == result.returncode
    assert result.stderr.splitlines()[-1] == (
        "python -m baseplate_events.collector: error: --metrics: cannot listen on "
        f"127.0.0.1:{port}: Address already in use")


def test_gunicorn_refuses_a_bad_metrics_address_before_it_binds():
    """BASEPLATE_EVENTS_COLLECTOR_METRICS=nowhere: gunicorn exits 2 with one line naming it."""
    import subprocess
    import sys

    from tests.support.processes import REPO

    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", *CONF, "-b", "127.0.0.1:0",
         "baseplate_events.collector:make_app({'keys': 'a=YWJj', 'sqlite.path': ':memory:'})"],
        env=dict(os.environ, BASEPLATE_EVENTS_COLLECTOR_METRICS="nowhere"), cwd=REPO,
        capture_output=True, text=True, timeout=60)
    assert 2 == result.returncode
    assert ["collector: BASEPLATE_EVENTS_COLLECTOR_METRICS: expected HOST:PORT "
            "(e.g. 127.0.0.1:9102), got 'nowhere'"] == result.stderr.splitlines()
