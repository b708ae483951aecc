"""The reference collector, over real HTTP on port 0: what it takes and what it refuses."""
from __future__ import annotations

import email.utils
import functools
import gzip
import json
import time
import uuid
import zlib
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from baseplate_events import Event as V1Event
from baseplate_events import serialize_v1_event, serialize_v2_event
from demo_app.collector import DemoCollector, make_server
from baseplate_events.collector.service.intake import Refused, gunzip_bounded, sign
from event_schemas.event.ttypes import Event

from tests.support.processes import serving_collector, signed_post

pytestmark = pytest.mark.system

SECRET = b"collector-test-secret"
SCHEMA = f"{Event.__module__}:{Event.__name__}"  # the sample schema: strict checks and names
NOW = 1_800_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def collector(clock: FakeClock) -> Iterator[DemoCollector]:
    with make_server("127.0.0.1", 0, keys={"demo": SECRET}, clock=clock, max_body=64 * 1024,
                     schema=SCHEMA) as c:
        yield c


def v2_event(**fields: Any) -> Event:
    values: Dict[str, Any] = dict(
        source="test", action="click", noun="button",
        client_timestamp=int(NOW * 1000), uuid=str(uuid.uuid4()),
    )
    values.update(fields)
    return Event(**values)


def v2_batch(events: List[Event]) -> bytes:
    items = [serialize_v2_event(e) for e in events]
    return b'{"1":{"lst":["rec",%d,' % len(items) + b",".join(items) + b"]}}"


def v2j_batch(events: List[Event]) -> bytes:
    return b"[" + b",".join(serialize_v2_event(e) for e in events) + b"]"


def v1_batch(count: int = 2) -> bytes:
    events = []
    for n in range(count):
        event = V1Event("signup", "account_created")
        event.set_field("n", n)
        events.append(serialize_v1_event(event))
    return b"[" + b",".join(events) + b"]"


def post(
    collector: DemoCollector,
    path: str,
    body: bytes,
    *,
    key: str = "demo",
    secret: bytes = SECRET,
    date: Optional[float] = NOW,
    headers: Optional[Dict[str, str]] = None,
    compress: bool = True,
) -> requests.Response:
    sent: Dict[str, str] = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "X-Signature": f"key={key}, mac={sign(secret, body)}",
    }
    if date is not None:
        sent["Date"] = email.utils.formatdate(date, usegmt=True)
    sent.update(headers or {})
    sent = {name: value for name, value in sent.items() if value != "<none>"}
    data = gzip.compress(body) if compress else body
    return requests.post(collector.url + path, data=data, headers=sent, timeout=10)


# -- acceptance ------------------------------------------------------------------


def test_accepts_a_signed_v2_batch_and_stores_every_event(collector: DemoCollector) -> None:
    """A v2 batch read with Thrift's TJSONProtocol is stored event by event."""
    events = [v2_event(), v2_event(action="view")]
    response = post(collector, "/v2", v2_batch(events))
    assert (200, {"accepted": 2, "duplicates": 0}) == (response.status_code, response.json())
    stored = {e["uuid"]: e for e in collector.store.events()}
    assert {e.uuid for e in events} == set(stored)
    assert "view" == stored[events[1].uuid]["action"]


def test_accepts_v2j_and_v1_batches(collector: DemoCollector) -> None:
    """The 2j (array of TJSON) and v1 (array of legacy objects) formats are accepted."""
    assert 200 == post(collector, "/v2j", v2j_batch([v2_event()])).status_code
    assert 200 == post(collector, "/v1", v1_batch(2)).status_code
    assert {"1": 2, "2j": 1} == _versions(collector)


def _versions(collector: DemoCollector) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for event in collector.store.events():
        counts[event["version"]] = counts.get(event["version"], 0) + 1
    return counts


def test_a_batch_sent_twice_is_stored_once(collector: DemoCollector) -> None:
    """De-duplication by uuid: a resent batch only counts receipts."""
    body = v2_batch([v2_event(), v2_event()])
    post(collector, "/v2", body)
    response = post(collector, "/v2", body)
    assert {"accepted": 0, "duplicates": 2} == response.json()
    assert [2, 2] == [e["receipts"] for e in collector.store.events()]
    assert (2, 2) == (collector.store.summary()["total"], collector.store.summary()["duplicates"])


def test_a_multi_member_gzip_body_is_read_whole(collector: DemoCollector) -> None:
    """Concatenated gzip members are one body, as gzip(1) reads them."""
    body = v2j_batch([v2_event(), v2_event()])
    data = gzip.compress(body[:40]) + gzip.compress(body[40:])
    response = post(collector, "/v2j", data, compress=False,
                    headers={"X-Signature": f"key=demo, mac={sign(SECRET, body)}"})
    assert 200 == response.status_code


def test_keep_alive_serves_several_batches_on_one_connection(collector: DemoCollector) -> None:
    """The collector speaks HTTP/1.1 keep-alive, as the publisher's session expects."""
    with requests.Session() as session:
        for _ in range(3):
            body = v2_batch([v2_event()])
            response = session.post(collector.url + "/v2", data=gzip.compress(body), headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip",
                "Date": email.utils.formatdate(NOW, usegmt=True),
                "X-Signature": f"key=demo, mac={sign(SECRET, body)}"})
            assert 200 == response.status_code
    assert 3 == collector.store.summary()["total"]


# -- signature -------------------------------------------------------------------


def test_sign_matches_the_rfc_4231_known_answer() -> None:
    """HMAC-SHA256 known answer (RFC 4231, test case 2)."""
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert expected == sign(b"Jefe", b"what do ya want for nothing?")


def test_a_missing_signature_is_401(collector: DemoCollector) -> None:
    """No X-Signature header: 401."""
    response = post(collector, "/v2", v2_batch([v2_event()]), headers={"X-Signature": "<none>"})
    assert (401, "missing X-Signature header") == (response.status_code, response.json()["error"])


@pytest.mark.parametrize("header", [
    "mac=" + "0" * 64,
    "key=demo",
    "key=demo, mac=xyz",
    "key=demo, mac=" + "0" * 63,
    "key=demo mac=" + "0" * 64,
    "demo:" + "0" * 64,
])
def test_a_malformed_signature_is_401(collector: DemoCollector, header: str) -> None:
    """X-Signature not of the form key=NAME, mac=<64 hex>: 401."""
    response = post(collector, "/v2", v2_batch([v2_event()]), headers={"X-Signature": header})
    assert 401 == response.status_code
    assert response.json()["error"].startswith("malformed X-Signature header")


def test_an_unknown_key_is_403(collector: DemoCollector) -> None:
    """A key name the collector does not hold: 403, nothing stored."""
    response = post(collector, "/v2", v2_batch([v2_event()]), key="other")
    assert (403, "signature does not match a key this collector holds") == (
        response.status_code, response.json()["error"])
    assert 0 == collector.store.summary()["total"]


def test_a_wrong_mac_is_403(collector: DemoCollector) -> None:
    """A mac made with another secret: 403."""
    response = post(collector, "/v2", v2_batch([v2_event()]), secret=b"not the secret")
    assert (403, "signature does not match a key this collector holds") == (
        response.status_code, response.json()["error"])


def test_an_unknown_key_and_a_wrong_mac_get_the_same_answer(collector: DemoCollector) -> None:
    """Key names cannot be enumerated: the two refusals are byte for byte the same."""
    body = v2_batch([v2_event()])
    unknown = post(collector, "/v2", body, key="other")
    wrong = post(collector, "/v2", body, secret=b"not the secret")
    assert (unknown.status_code, unknown.content) == (wrong.status_code, wrong.content)


def test_a_mac_over_the_compressed_body_is_403(collector: DemoCollector) -> None:
    """The mac covers the uncompressed body; one over the gzip bytes is refused."""
    body = v2_batch([v2_event()])
    data = gzip.compress(body)
    response = post(collector, "/v2", data, compress=False,
                    headers={"X-Signature": f"key=demo, mac={sign(SECRET, data)}"})
    assert 403 == response.status_code


# -- Date and replay window ---------------------------------------------------------


def test_a_stale_date_is_401(collector: DemoCollector) -> None:
    """A Date ten minutes old is outside the 300 s replay window: 401."""
    response = post(collector, "/v2", v2_batch([v2_event()]), date=NOW - 600)
    assert 401 == response.status_code
    assert ("Date is 600 s behind the collector's clock; the replay window is 300 s"
            == response.json()["error"])


def test_a_date_from_the_future_is_401(collector: DemoCollector) -> None:
    """A Date too far ahead is refused as well."""
    response = post(collector, "/v2", v2_batch([v2_event()]), date=NOW + 400)
    assert "Date is 400 s ahead of the collector's clock; the replay window is 300 s" == (
        response.json()["error"])


def test_a_date_inside_the_window_is_accepted(collector: DemoCollector, clock: FakeClock) -> None:
    """Moving the collector's clock 299 s on still accepts the request."""
    clock.now = NOW + 299
    assert 200 == post(collector, "/v2", v2_batch([v2_event()])).status_code


@pytest.mark.parametrize("date", ["<none>", "yesterday"])
def test_a_missing_or_unparseable_date_is_401(collector: DemoCollector, date: str) -> None:
    """No usable Date header: 401."""
    response = post(collector, "/v2", v2_batch([v2_event()]), headers={"Date": date})
    assert 401 == response.status_code


# -- size and encoding ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1024 * 1024)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + compressor.flush()


def test_a_gzip_bomb_is_413(collector: DemoCollector) -> None:
    """64 MiB of zeros in a small gzip body is refused once past the cap."""
    bomb = _bomb(64 * 1024 * 1024)
    assert len(bomb) < 64 * 1024
    response = post(collector, "/v2", bomb, compress=False)
    assert (413, "decompressed body is over 65536 bytes") == (
        response.status_code, response.json()["error"])


def test_decompression_stops_at_the_cap() -> None:
    """gunzip_bounded produces at most limit + 1 bytes before refusing, however big the bomb."""
    started = time.monotonic()
    with pytest.raises(Refused) as raised:
        gunzip_bounded(_bomb(64 * 1024 * 1024), 1024)
    assert 413 == raised.value.status
    assert time.monotonic() - started < 5


def test_a_body_over_the_cap_is_413(collector: DemoCollector) -> None:
    """A Content-Length over the cap is refused without reading the body."""
    response = post(collector, "/v2", b"x" * (64 * 1024 + 1), compress=False)
    assert (413, "body is 65537 bytes; the collector takes at most 65536") == (
        response.status_code, response.json()["error"])


def test_a_session_keeps_working_after_a_413(collector: DemoCollector) -> None:
    """A body a little over the cap is drained: the client reads the 413, then sends again."""
    body = v2_batch([v2_event()])
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
               "Date": email.utils.formatdate(NOW, usegmt=True),
               "X-Signature": f"key=demo, mac={sign(SECRET, body)}"}
    with requests.Session() as session:
        too_big = session.post(collector.url + "/v2", data=b"x" * (300 * 1024),
                               headers=headers, timeout=10)
        again = session.post(collector.url + "/v2", data=gzip.compress(body),
                             headers=headers, timeout=10)
    assert (413, 200) == (too_big.status_code, again.status_code)


def test_a_body_that_is_not_gzip_is_400(collector: DemoCollector) -> None:
    """Content-Encoding says gzip, the body is not."""
    response = post(collector, "/v2", v2_batch([v2_event()]), compress=False)
    assert 400 == response.status_code
    assert response.json()["error"].startswith("body is not valid gzip")


def test_a_truncated_gzip_body_is_400(collector: DemoCollector) -> None:
    """A gzip stream cut short is refused."""
    body = v2_batch([v2_event()])
    response = post(collector, "/v2", gzip.compress(body)[:-12], compress=False)
    assert ("body is not valid gzip: the stream is truncated" == response.json()["error"])


def test_an_uncompressed_body_is_415(collector: DemoCollector) -> None:
    """The publisher always gzips; another Content-Encoding is refused."""
    response = post(collector, "/v2", v2_batch([v2_event()]), compress=False,
                    headers={"Content-Encoding": "identity"})
    assert (415, "Content-Encoding must be gzip, got 'identity'") == (
        response.status_code, response.json()["error"])


def test_a_chunked_body_is_read_whole_up_to_the_cap(collector: DemoCollector) -> None:
    """Without Content-Length the server reads the chunked body (bounded) and takes it."""
    plain = v2_batch([v2_event()])
    response = requests.post(collector.url + "/v2", data=iter([gzip.compress(plain)]),
                             timeout=10, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(NOW, usegmt=True),
        "X-Signature": f"key=demo, mac={sign(SECRET, plain)}"})
    assert (200, {"accepted": 1, "duplicates": 0}) == (response.status_code, response.json())


def test_a_body_that_is_not_json_content_is_415(collector: DemoCollector) -> None:
    """The publisher sends Content-Type: application/json; anything else is refused."""
    response = post(collector, "/v2", v2_batch([v2_event()]),
                    headers={"Content-Type": "application/x-thrift"})
    assert (415, "Content-Type must be application/json, got 'application/x-thrift'") == (
        response.status_code, response.json()["error"])


# -- batch format per version ----------------------------------------------------------


@pytest.mark.parametrize("path, body", [
    ("/v1", v2_batch([v2_event()])),
    ("/v2", v2j_batch([v2_event()])),
    ("/v2", v1_batch(1)),
    ("/v2j", v2_batch([v2_event()])),
    ("/v2j", b'{"events": []}'),
    ("/v2", b'{"1":{"lst":["rec",2,' + serialize_v2_event(v2_event()) + b"]}}"),
    ("/v2", b'{"1":{"lst":["i32",1,5]}}'),
    ("/v1", b"[]"),
    ("/v1", b"not json"),
    ("/v2j", b"[\xff]"),
])
def test_a_body_in_the_wrong_format_for_its_version_is_400(
    collector: DemoCollector, path: str, body: bytes
) -> None:
    """Each version takes its own batch shape only."""
    response = post(collector, path, body)
    assert 400 == response.status_code
    assert response.json()["error"].startswith(f"not a v{path[2:]} batch: ")


def test_an_unknown_version_path_is_404(collector: DemoCollector) -> None:
    """Only /v1, /v2 and /v2j take batches."""
    assert 404 == post(collector, "/v3", v2_batch([v2_event()])).status_code


def test_a_v2_batch_with_an_event_missing_its_uuid_is_422_naming_it(
        collector: DemoCollector) -> None:
    """A well-formed batch with a refused event: 422, the reason per event, nothing stored."""
    good = v2_event()
    bad = Event(source="test", action="click", noun="button", client_timestamp=1)
    response = post(collector, "/v2", v2_batch([good, bad]))
    assert 422 == response.status_code
    assert {"error": "1 of 2 events refused; first: event 1: uuid: missing or not a string",
            "refused": [{"index": 1, "uuid": None, "reason": "uuid: missing or not a string"}],
            } == response.json()
    assert 0 == collector.store.summary()["total"]


def test_a_v2_event_thrift_cannot_read_is_422_naming_it(collector: DemoCollector) -> None:
    """An event whose TJSON Thrift refuses is located and named."""
    body = (b'{"1":{"lst":["rec",2,' + serialize_v2_event(v2_event())
            + b',{"4":{"i64":"soon"}}]}}')
    response = post(collector, "/v2", body)
    assert 422 == response.status_code
    refused = response.json()["refused"]
    assert [1] == [r["index"] for r in refused]
    assert refused[0]["reason"].startswith("not a TJSON Event: ")


def test_a_v2j_event_with_a_field_of_the_wrong_type_is_422(collector: DemoCollector) -> None:
    """2j validates each event like v2: with a schema, a field's type must match it."""
    event = serialize_v2_event(v2_event()).replace(b'"1":{"str":"test"}', b'"1":{"i32":5}')
    response = post(collector, "/v2j", b"[" + event + b"]")
    assert (422, "not a TJSON Event: field 1 (source): expected 'str', got 'i32'") == (
        response.status_code, response.json()["refused"][0]["reason"])


def test_a_v1_event_with_a_bad_uuid_is_422(collector: DemoCollector) -> None:
    """v1 events need a UUID and a payload object."""
    item = json.loads(v1_batch(1))[0]
    item["uuid"] = "not-a-uuid"
    response = post(collector, "/v1", json.dumps([item, {"event_topic": "x"}]).encode())
    assert 422 == response.status_code
    assert ["uuid: 'not-a-uuid' is not a UUID",
            "event_type: missing or not a non-empty string"] == [
        r["reason"] for r in response.json()["refused"]]


def test_a_storage_failure_is_a_503_the_publisher_will_retry(collector: DemoCollector) -> None:
    """A sink that cannot take the batch answers 503 with Retry-After, not 500."""
    collector.store.close()
    response = post(collector, "/v2", v2_batch([v2_event()]))
    assert (503, "the sink is unavailable: sqlite: the sink for :memory: is closed", "5") == (
        response.status_code, response.json()["error"], response.headers["Retry-After"])


# -- what it serves -----------------------------------------------------------------------


def test_the_json_endpoint_lists_counts_total_and_events(collector: DemoCollector) -> None:
    """GET /api/events: total, counts per source and action, every event by uuid."""
    events = [v2_event(), v2_event(), v2_event(source="other", action="view")]
    post(collector, "/v2", v2_batch(events))
    post(collector, "/v2", b"[]")
    document = requests.get(collector.url + "/api/events", timeout=10).json()
    assert 3 == document["total"]
    assert [{"source": "test", "action": "click", "count": 2},
            {"source": "other", "action": "view", "count": 1}] == document["counts"]
    assert {"200": 1, "400": 1} == document["responses"]
    assert sorted(e.uuid for e in events) == sorted(e["uuid"] for e in document["events"])


# -- command line --------------------------------------------------------------------------


def test_the_command_line_serves_the_publisher_configs_keys_and_stops_on_sigterm(
    tmp_path: Any,
) -> None:
    """python -m demo_app.collector --port 0 prints its URL, accepts, exits 0 on SIGTERM."""
    import base64

    config = tmp_path / "publisher.ini"
    config.write_text(
        "[event-publisher:v2]\ncollector.hostname = localhost\nkey.name = demo\n"
        f"key.secret = {base64.b64encode(SECRET).decode()}\n"
    )
    with serving_collector(
        "demo_app.collector", "--port", "0",
        "--publisher-config", str(config), "--db", str(tmp_path / "events.sqlite3"),
    ) as url:
        response = signed_post(url, "/v2", v2_batch([v2_event()]), SECRET)
        assert 200 == response.status_code
