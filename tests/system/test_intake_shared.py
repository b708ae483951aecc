"""The tests' and the benchmark's collectors check requests with the collector's one intake."""
from __future__ import annotations

import pytest
import gzip
import http.client
import json
import threading
from email.utils import formatdate
from typing import Dict, Tuple

from baseplate_events.collector.service.intake import sign
from benchmarks.collector import serve
from tests.support.collector import LocalCollector

pytestmark = pytest.mark.system

SECRET = b"intake-secret"
BODY = b'{"1":{"lst":["rec",1,{"5":{"str":"6f1c6a53-5d0e-4b4f-9d43-2f1b0e6a7c11"}}]}}'
STALE = "Mon, 01 Jan 2001 00:00:00 GMT"


def post(port: int, secret: bytes = SECRET, date: str = "") -> Tuple[int, bytes]:
    headers: Dict[str, str] = {
        "Content-Type": "application/json", "Content-Encoding": "gzip", "User-Agent": "test",
        "Date": date or formatdate(usegmt=True),
        "X-Signature": f"key=TestKey, mac={sign(secret, BODY)}"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/v2", gzip.compress(BODY), headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_test_collector_answers_a_wrong_mac_403_without_a_problem() -> None:
    """A batch signed with another secret: the intake's 403 answer; not the publisher's bug."""
    with LocalCollector(SECRET) as collector:
        port = collector.server.server_address[1]
        assert (403, b"signature does not match a key this collector holds") == post(
            port, secret=b"other")
        assert ([], []) == (collector.problems, collector.events())


def test_the_test_collector_records_a_stale_date_as_a_problem() -> None:
    """A Date outside the intake's replay window: 400, recorded with the intake's words."""
    with LocalCollector(SECRET) as collector:
        status, _ = post(collector.server.server_address[1], date=STALE)
        assert 400 == status
        assert 1 == len(collector.problems)
        assert collector.problems[0].endswith(
            "s behind the collector's clock; the replay window is 300 s")


def test_the_test_collector_takes_a_good_batch() -> None:
    """A well-signed, current batch passes the intake and its event is kept."""
    with LocalCollector(SECRET) as collector:
        assert (200, b"") == post(collector.server.server_address[1])
        assert ["6f1c6a53-5d0e-4b4f-9d43-2f1b0e6a7c11"] == collector.uuids()


def test_the_benchmark_collector_refuses_a_stale_date_and_counts_it() -> None:
    """The counting collector makes the intake's header checks: 401 and one refusal."""
    server = serve(0.0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        status, answer = post(port, date=STALE)
        assert (401, True) == (status, answer.endswith(b"the replay window is 300 s"))
        assert (200, b"") == post(port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/stats")
        stats = json.loads(connection.getresponse().read())
        connection.close()
        assert (1, 1) == (stats["refused"], stats["events"])
    finally:
        server.shutdown()
        server.server_close()
