"""A problem that belongs to one event is a 422 naming it; formats that are ASCII take ASCII.

And the app's answers carry no hop-by-hop header, whatever they refuse.
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any, Dict, List

import pytest
from webob import Request

from baseplate_events.collector import make_app
from baseplate_events.collector.decode.batches import RefusedEvents, decode_batch
from baseplate_events.collector.decode.documents import TJSONError, canonical_uuid, read_struct
from baseplate_events.collector.sinks import STORED
from baseplate_events.collector.sinks.sqlite import SQLiteSink
from demo_app.page_store import PageStore

UUID = "6f0c6b36-2d1e-4b3c-9d7a-0e6f5b1c2a3d"
KEYS = f"demo={base64.b64encode(b'a test secret').decode()}"


@pytest.mark.parametrize("spelling", ["urn:uu\u0130d:", "urn:uu\u0131d:", "URN:UU\u0130D:",
                                      "urn:\u212aid:"])
def test_a_uuid_with_a_letter_that_folds_to_ascii_is_no_uuid(spelling: str) -> None:
    """U+0130, U+0131 and the Kelvin sign fold to i/k under Unicode case folding: refused."""
    assert None is canonical_uuid(spelling + UUID)


def test_urn_uuid_in_ascii_upper_case_is_a_uuid() -> None:
    """The ASCII spellings are still one id."""
    assert UUID == canonical_uuid("URN:UUID:" + UUID.upper())


@pytest.mark.parametrize("documents", [False, True])
def test_both_paths_refuse_a_dotted_i_uuid_naming_the_event(documents: bool) -> None:
    """The fast path (JSONL, Kafka) and the general one (SQLite) give the same 422."""
    event = '{"1":{"str":"shop"},"5":{"str":"urn:uu\u0130d:%s"}}' % UUID
    good = '{"1":{"str":"shop"},"5":{"str":"%s"}}' % UUID.replace("6f", "7f")
    with pytest.raises(RefusedEvents) as refused:
        decode_batch("2j", f"[{good},{event}]".encode(), documents=documents)
    assert [(1, None, "no top-level string field holds a UUID; give the uuid field's id with "
                      "--uuid-field ID (or --schema module:Struct with a 'uuid' field)")] == [
        (r.index, r.uuid, r.reason) for r in refused.value.refusals]


@pytest.mark.parametrize("key", ["1_0", " 1", "1 ", "\u0661", "\uff11", "INFINITY", "01", "+1",
                                 "1.", ".5", "0x10"])
def test_a_dbl_map_key_takes_ascii_number_syntax_only(key: str) -> None:
    """float() alone takes these; a map key of type "dbl" does not."""
    struct = {"3": {"map": ["dbl", "i32", 1, {key: 1}]}}
    with pytest.raises(TJSONError) as refused:
        read_struct(struct)
    assert f"field 3.[{key!r}]: map key {key!r} is not a number" == str(refused.value)


@pytest.mark.parametrize("key, value", [("1.5", 1.5), ("-0", -0.0), ("1e3", 1000.0),
                                        ("1E-07", 1e-07), ("Infinity", float("inf"))])
def test_a_dbl_map_key_in_json_number_syntax_is_taken(key: str, value: float) -> None:
    """JSON numbers and Thrift's spellings of the special doubles are keys."""
    assert {3: {value: 1}} == read_struct({"3": {"map": ["dbl", "i32", 1, {key: 1}]}})


@pytest.mark.parametrize("key", ["\u0661", "\uff11", "1\u0662"])
def test_a_field_id_in_other_digits_is_refused(key: str) -> None:
    """Arabic-Indic and full-width digits are digits to str.isdigit, not to TJSON."""
    with pytest.raises(TJSONError) as refused:
        read_struct({key: {"str": "x"}})
    assert f"{key!r} is not a field id (a decimal i16)" == str(refused.value)


def v1(payload: str) -> bytes:
    return ('[{"event_topic":"shop","event_type":"view","event_ts":1700000000000,'
            f'"uuid":"{UUID}","payload":{payload}}}]').encode()


def test_a_v1_event_nested_past_64_levels_is_refused_naming_where() -> None:
    """As v2 events are capped: the event's 422 says where, before any sink sees it."""
    with pytest.raises(RefusedEvents) as refused:
        decode_batch("1", v1('{"a":' + "[" * 70 + "]" * 70 + "}"))
    path = "payload.a" + "[0]" * 55
    assert [(0, UUID, f"{path[:61]}...: nested more than 64 levels deep; an event may nest "
                      f"at most 64")] == [
        (r.index, r.uuid, r.reason) for r in refused.value.refusals]


def test_a_v1_event_nested_64_levels_is_stored_by_sqlite() -> None:
    """At the cap the event is taken, and SQLite writes its document again without a hitch."""
    events = decode_batch("1", v1('{"a":' + "[" * 62 + "]" * 62 + "}"), documents=True)
    sink = SQLiteSink(":memory:")
    try:
        assert [STORED] == sink.store("v1", events)
    finally:
        sink.close()


def test_an_integer_of_5000_digits_is_that_events_422() -> None:
    """The parser refuses it (Python's digit limit); the event is named, the batch not 400."""
    good = v1("{}")[1:-1].decode()
    body = f'[{good},{v1("{" + chr(34) + "n" + chr(34) + ":" + "1" * 5000 + "}")[1:-1].decode()}]'
    with pytest.raises(RefusedEvents) as refused:
        decode_batch("1", body.encode())
    [refusal] = refused.value.refusals
    assert (1, None) == (refusal.index, refusal.uuid)
    assert refusal.reason.startswith("a number has more digits than the collector reads: "
                                     "Exceeds the limit (4300 digits)"), refusal.reason


def answers(environs: List[Dict[str, Any]]) -> List[Any]:
    app = make_app({"keys": KEYS}, sink=SQLiteSink(":memory:"))
    return [Request(environ).get_response(app) for environ in environs]


def test_no_answer_carries_a_hop_by_hop_header() -> None:
    """No length, a length over the cap, a short body, a bad path: no Connection header."""
    def post(path: str, **environ: Any) -> Dict[str, Any]:
        request = Request.blank(path, method="POST")
        request.environ.pop("CONTENT_LENGTH", None)
        request.environ.update(environ)
        return request.environ

    got = answers([
        post("/v2j"),
        post("/v2j", CONTENT_LENGTH=str(100 << 20), **{"wsgi.input": io.BytesIO(b"")}),
        post("/v2j", CONTENT_LENGTH="10", **{"wsgi.input": io.BytesIO(b"[]")}),
        post("/v2j", PATH_INFO="/v2j\xff", CONTENT_LENGTH="2", **{"wsgi.input": io.BytesIO(b"[]")}),
    ])
    assert [411, 413, 400, 400] == [response.status_int for response in got]
    assert [[], [], [], []] == [
        [name for name in response.headers if name.lower() in (
            "connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer",
            "proxy-authenticate", "proxy-authorization")] for response in got]
    assert ["missing Content-Length", "body ended after 2 of 10 bytes"] == [
        json.loads(got[i].body)["error"] for i in (0, 2)]


def test_a_refused_uuid_with_a_lone_surrogate_is_kept_for_the_page() -> None:
    """The journal keeps it, the surrogate replaced: nothing is logged as failed."""
    sink = PageStore(":memory:")
    try:
        sink.record_refusals("v1", [{"index": 0, "uuid": "a\ud800b", "reason": "r\udfff"}], 1)
        assert [("a?b", "r?")] == [(r["uuid"], r["reason"]) for r in sink.refusals()]
    finally:
        sink.close()
