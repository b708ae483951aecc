"""Hostile answers, proxies, endpoints and dead letters against the real publisher subprocess.

Each test plays one row of the publisher's edge cases: a "collector" that
answers 2xx without storing, a redirect, interim 1xx answers, a statsd
endpoint that is an IPv6 literal or does not resolve, a malformed proxy
variable, a dead-letter file of another queue, a batch that stays stuck.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import posix_ipc
import pytest

from publisher.send.dead_letters import DeadLetters

from tests.support.collector import LocalCollector
from tests.support.publisher import (
    ROOT,
    SECRET,
    Ledger,
    PublisherProcess,
    config_file,
    make_event,
    uuids_of,
)
from tests.system.test_publisher_prometheus import metrics_url, scrape

pytestmark = pytest.mark.system

LOCATION = "https://collector.example/v2j"
PORTAL = b"<html><body>Sign in to the Wi-Fi\r\n</body></html>"


def raw(status_line: str, headers: Dict[str, str], body: bytes = b"") -> bytes:
    """One raw HTTP/1.1 answer with a Content-Length."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"HTTP/1.1 {status_line}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def health(tmp_path: Path) -> Dict[str, Any]:
    return json.loads((tmp_path / "spool" / "health.json").read_text())


def wait_for_health(tmp_path: Path, check: Callable[[Dict[str, Any]], bool],
                    timeout: float = 10.0) -> Dict[str, Any]:
    """The health file once ``check`` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc = health(tmp_path)
            if check(doc):
                return doc
        except (OSError, ValueError):
            doc = {}
        if time.monotonic() > deadline:
            raise AssertionError(f"health file never passed the check: {doc}")
        time.sleep(0.05)


def start_with_events(publisher_for: Callable[..., PublisherProcess], ledger: Ledger,
                      hostname: str, count: int = 5, **keys: str) -> PublisherProcess:
    """Put ``count`` events first, so that the publisher sends them as one batch."""
    ledger.feed(count)
    return publisher_for(hostname, **keys).start()


# -- only a collector's success delivers -------------------------------------------------

KEPT_2XX = {
    "html": (
        raw("200 OK", {"Content-Type": "text/html; charset=utf-8"}, PORTAL),
        "collector answered 200 OK (Content-Type: 'text/html; charset=utf-8', first 200 "
        "bytes: '<html><body>Sign in to the Wi-Fi\\r\\n</body></html>'), which does not say "
        "the batch was stored; to accept it, set collector.accept_html = true; keeping 5 "
        "events, retrying in ",
    ),
    "accepted-0": (
        raw("200 OK", {"Content-Type": "application/json"}, b'{"accepted": 0}'),
        "collector answered 200 OK (Content-Type: 'application/json', first 200 bytes: "
        "'{\"accepted\": 0}'), which does not say the batch was stored; no setting accepts "
        "it, as it counts other events than the 5 sent: check that collector.hostname "
        "names the event collector; keeping 5 events, retrying in ",
    ),
    "201": (
        raw("201 Created", {}),
        "collector answered 201 Created (Content-Type: none, first 200 bytes: ''), which "
        "does not say the batch was stored; to accept it, add 201 to "
        "collector.success_statuses (default 200,202,204; 2xx takes any status below 400); "
        "keeping 5 events, retrying in ",
    ),
    "206": (
        raw("206 Partial Content", {"Content-Type": "text/plain"}, b"part"),
        "collector answered 206 Partial Content (Content-Type: 'text/plain', first 200 "
        "bytes: 'part'), which does not say the batch was stored; to accept it, add 206 to "
        "collector.success_statuses (default 200,202,204; 2xx takes any status below 400); "
        "keeping 5 events, retrying in ",
    ),
}


@pytest.mark.parametrize("kind", list(KEPT_2XX))
def test_a_2xx_that_says_nothing_was_stored_keeps_the_events(
    kind: str, publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """An HTML page, {"accepted": 0}, 201 or 206: kept, counted, logged once, delivered later."""
    answer, line = KEPT_2XX[kind]
    with LocalCollector(SECRET, version="2j") as collector:
        collector.raw_answers = [answer] * 4
        publisher = start_with_events(publisher_for, ledger, collector.hostname)
        collector.wait_for_events(5)
        doc = wait_for_health(tmp_path, lambda d: d["spool_events"] == 0)
        assert 0 == publisher.stop()
    log = publisher.log()
    assert (1, 0) == (log.count(line), log.count("Traceback")), log
    assert (4, 4, 5) == tuple(doc["counters"].get(k) for k in ("error.answer", "retry", "sent"))
    assert sorted(ledger.put) == sorted(collector.uuids())


@pytest.mark.parametrize("answer, keys", [
    (raw("201 Created", {}), {"collector.success_statuses": "2xx"}),
    (raw("200 OK", {"Content-Type": "text/html"}, PORTAL), {"collector.accept_html": "true"}),
    (raw("200 OK", {"Content-Type": "application/json"}, b'{"accepted": 3, "duplicates": 2}'),
     {}),
], ids=["2xx-takes-201", "accept_html", "accepted-plus-duplicates"])
def test_an_answer_the_settings_accept_delivers(
    answer: bytes, keys: Dict[str, str], publisher_for: Callable[..., PublisherProcess],
    ledger: Ledger, tmp_path: Path
):
    """What the settings (or a full count) accept is delivered at the first POST."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.raw_answers = [answer]
        publisher = start_with_events(publisher_for, ledger, collector.hostname, **keys)
        doc = wait_for_health(tmp_path, lambda d: d["counters"].get("sent") == 5)
        assert 0 == publisher.stop()
    assert (0, 1, 0) == (doc["spool_events"], collector.requests,
                         doc["counters"]["error.answer"])


# -- a redirect is an answer, never a crash ------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_kept_logged_once_and_backed_off(
    status: int, publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """A 3xx with a Location: no traceback, one line with the fix, a backoff per answer."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.raw_answers = [raw(f"{status} Elsewhere", {"Location": LOCATION},
                                     b"x" * 300)] * 4
        publisher = start_with_events(publisher_for, ledger, collector.hostname)
        collector.wait_for_events(5)
        doc = wait_for_health(tmp_path, lambda d: d["spool_events"] == 0)
        assert 0 == publisher.stop()
    log = publisher.log()
    line = (f"collector answered {status} (Location: {LOCATION}); redirects are not followed: "
            "set collector.hostname and collector.scheme to where events go (now "
            f"http://{collector.hostname}/v2j); keeping 5 events, retrying in ")
    assert (1, 0) == (log.count(line), log.count("Traceback")), log
    assert (4, 4) == (doc["counters"].get("error.redirect"), doc["counters"].get("retry"))
    assert sorted(ledger.put) == sorted(collector.uuids())


# -- interim answers are read past ----------------------------------------------------------


@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n",
], ids=["103", "102", "several"])
def test_interim_answers_before_the_collectors_are_read_past(
    interim: bytes, publisher_for: Callable[..., PublisherProcess], ledger: Ledger,
    tmp_path: Path
):
    """1xx answers from a front end: the final answer counts; each event is stored once."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.interim = interim
        publisher = start_with_events(publisher_for, ledger, collector.hostname)
        doc = wait_for_health(tmp_path, lambda d: d["counters"].get("sent") == 5)
        time.sleep(0.3)
        assert 0 == publisher.stop()
    assert sorted(ledger.put) == sorted(collector.uuids())
    assert (1, 0, 1) == (collector.requests, doc["counters"]["error.io"],
                         publisher.log().count("starting: queue"))


# -- a metrics endpoint never stops a start --------------------------------------------------


def test_the_publisher_sends_statsd_to_an_ipv6_literal(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """metrics.endpoint = [::1]:PORT: the gauges arrive on the IPv6 loopback."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("::1", 0))
        statsd.settimeout(5)
        port = statsd.getsockname()[1]
        with LocalCollector(SECRET, version="2j") as collector:
            publisher = publisher_for(collector.hostname,
                                      **{"metrics.endpoint": f"[::1]:{port}"}).start()
            packet = statsd.recv(4096)
            assert 0 == publisher.stop()
    assert f"metrics to statsd [::1]:{port}" in publisher.log()
    assert b"queue.depth:0|g" in packet.split(b"\n")


def test_a_statsd_host_that_does_not_resolve_does_not_stop_the_publisher(
    publisher_for: Callable[..., PublisherProcess], ledger: Ledger, tmp_path: Path
):
    """statsd.invalid: one warning, counting locally, events delivered."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_with_events(publisher_for, ledger, collector.hostname,
                                      **{"metrics.endpoint": "statsd.invalid:8125"})
        collector.wait_for_events(5)
        doc = wait_for_health(tmp_path, lambda d: d["counters"].get("sent") == 5)
        assert 0 == publisher.stop()
    warnings = [line for line in publisher.log().splitlines() if "statsd.invalid" in line
                and " WARNING " in line]
    assert 1 == len(warnings), publisher.log()
    assert warnings[0].split(" WARNING ", 1)[1].startswith(
        "metrics.endpoint: statsd host statsd.invalid does not resolve now (")
    assert warnings[0].endswith("); counting locally and trying again every 30s")
    assert 0 == doc["spool_events"]


def test_a_malformed_metrics_endpoint_is_a_configuration_error(queue_name: str, tmp_path: Path):
    """An unclosed IPv6 bracket: exit 2 naming metrics.endpoint."""
    config = config_file(queue_name, "127.0.0.1:9", tmp_path,
                         **{"metrics.endpoint": "[::1:8125"})
    done = run(queue_name, config)
    assert (2, "baseplate-events-publisher: error: metrics.endpoint: expected host:port with an "
            "IPv6 address in brackets ([::1]:8125), got '[::1:8125'\n") == (
        done.returncode, done.stderr)


# -- a malformed proxy variable is a configuration error --------------------------------------

FIX = ("set it to http://HOST:PORT (or https://; credentials as USER:PASSWORD@ before the "
       "host, with an @ or : in them written %40 or %3A) or unset it")


def run(queue_name: str, config: Path, **env: str) -> "subprocess.CompletedProcess[str]":
    """The publisher run to its end, without the proxy variables of ours, with ``env``."""
    environ = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--queue-name", queue_name, str(config)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=30, env=environ)


@pytest.mark.parametrize("value, shown, problem", [
    ("http://[::1", "http://[::1", "not a valid proxy URL (Invalid IPv6 URL)"),
    ("http://proxy:99999", "http://proxy:99999",
     "not a valid proxy URL (Port out of range 0-65535)"),
    ("http://user:p@ss@[bad", "http://user:***@[bad", "not a valid proxy URL (Invalid IPv6 URL)"),
], ids=["unclosed-bracket", "port-out-of-range", "credentials"])
def test_a_malformed_proxy_variable_stops_the_start_before_the_queue(
    queue_name: str, tmp_path: Path, value: str, shown: str, problem: str
):
    """Exit 2, one line naming the variable, credentials masked; the queue is never made."""
    done = run(queue_name, config_file(queue_name, "127.0.0.1:9", tmp_path), HTTP_PROXY=value)
    assert (2, f"baseplate-events-publisher: error: HTTP_PROXY={shown}: {problem}; {FIX}\n"
            ) == (done.returncode, done.stderr)
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/events-" + queue_name)


# -- dead-letter replay keeps to its queue ---------------------------------------------------


def test_replay_skips_the_lines_of_another_queue_unless_asked(queue_name: str, tmp_path: Path):
    """Lines recorded for another queue are skipped and counted; --any-queue sends them."""
    dead = tmp_path / "spool" / "dead-letter.jsonl"
    ours = [make_event(n) for n in range(3)]
    theirs = [make_event(n) for n in range(3, 5)]
    DeadLetters(str(dead), queue_name).write(ours[:2], 422, "poison event")
    DeadLetters(str(dead), "billing").write(theirs, 422, "poison event")
    DeadLetters(str(dead), queue_name).write(ours[2:], 422, "poison event")
    with LocalCollector(SECRET, version="2j") as collector:
        config = config_file(queue_name, collector.hostname, tmp_path)
        first = replay(queue_name, config, dead)
        assert uuids_of(ours) == collector.uuids()
        archived = Path(f"{dead}.replayed")
        second = replay(queue_name, config, archived, "--any-queue")
        assert uuids_of(ours) + uuids_of(ours[:2] + theirs + ours[2:]) == collector.uuids()
    assert (0, (
        f"replay of {dead}: sent 3 events; 0 refused again, written to {dead}; 0 unreadable "
        "lines skipped; 2 events skipped because another queue recorded them (2 for "
        f"'billing'; this is '{queue_name}'): replay the archived file with --any-queue to "
        f"send them under this queue's key; archived as {archived}\n"
    )) == (first.returncode, first.stdout)
    assert 0 == second.returncode, second.stderr


def replay(queue_name: str, config: Path, dead: Path, *flags: str
           ) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--queue-name", queue_name, *flags,
         "--replay-dead-letter", str(dead), str(config)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=60)


# -- a stuck batch is visible ----------------------------------------------------------------


def test_a_stuck_batch_shows_its_failed_tries_and_age_everywhere(
    queue_name: str, publisher_for: Callable[..., PublisherProcess], ledger: Ledger,
    tmp_path: Path
):
    """Failed tries and the oldest event's age: at 0 from the first scrape, then growing."""
    labels = (("queue", queue_name),)
    tries = ("baseplate_events_publisher_batch_failed_tries", labels)
    age = ("baseplate_events_publisher_spool_oldest_age_seconds", labels)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd, \
            LocalCollector(SECRET, version="2j") as collector:
        statsd.bind(("127.0.0.1", 0))
        statsd.settimeout(5)
        publisher = publisher_for(collector.hostname, **{
            "metrics.prometheus": "127.0.0.1:0",
            "metrics.endpoint": f"127.0.0.1:{statsd.getsockname()[1]}",
        }).start()
        first = scrape(metrics_url(publisher))
        collector.fail_for(30, 503)
        ledger.feed(3)
        wait_for_health(tmp_path, lambda d: d["batch_failed_tries"] >= 3
                        and d["oldest_spooled_age_seconds"] > 1.0)
        deadline = time.monotonic() + 5  # the gauges follow within a second
        later = scrape(metrics_url(publisher))
        while (later[tries] < 3 or later[age] <= 1.0) and time.monotonic() < deadline:
            time.sleep(0.1)
            later = scrape(metrics_url(publisher))
        packet = statsd.recv(4096)
        while not packet.startswith(b"batch.failed_tries:") or packet.endswith(b":0|g"):
            packet = statsd.recv(4096)
        collector.fail_for(0, 503)
        done = wait_for_health(tmp_path, lambda d: d["spool_events"] == 0
                               and d["batch_failed_tries"] == 0)
        assert 0 == publisher.stop()
    assert (0.0, 0.0) == (first[tries], first[age])
    assert (True, True) == (later[tries] >= 3, later[age] > 1.0), later
    assert int(packet.split(b":")[1].split(b"|")[0]) >= 3
    assert None is done["oldest_spooled_age_seconds"]
