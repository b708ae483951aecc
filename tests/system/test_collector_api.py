"""The demo collector's JSON over real HTTP: /api/events newest first with a cursor, /api/stats."""
from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List

import pytest
import requests

from baseplate_events.collector.sinks import StoredEvent
from demo_app.answer_tally import KEEP_SECONDS, AnswerTally
from demo_app.collector import DemoCollector, make_server
from demo_app.collector_api import SHOWN_COUNTS, delay_distribution
from demo_app.collector_page import page_hosts
from demo_app.page_store import KEEP_REFUSED, PageStore
from demo_app.store_reader import StoreReader

from tests.support.processes import serving_collector
from tests.system.test_collector import (
    NOW,
    SCHEMA,
    SECRET,
    FakeClock,
    post,
    v1_batch,
    v2_batch,
    v2_event,
)
from tests.system.test_collector import v2j_batch

#: every test serves the demo collector on a port of its own
pytestmark = pytest.mark.system


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def collector(clock: FakeClock) -> Iterator[DemoCollector]:
    with make_server("127.0.0.1", 0, keys={"demo": SECRET}, clock=clock, schema=SCHEMA) as c:
        yield c


def get(collector: DemoCollector, path: str) -> requests.Response:
    return requests.get(collector.url + path, timeout=10)


def stored_uuids(collector: DemoCollector, count: int, **fields: Any) -> List[str]:
    """Post ``count`` events in one batch; their uuids in the order sent."""
    events = [v2_event(**fields) for _ in range(count)]
    assert 200 == post(collector, "/v2", v2_batch(events)).status_code
    return [e.uuid for e in events]


# -- /api/events ---------------------------------------------------------------------


def test_events_are_listed_newest_first(collector: DemoCollector) -> None:
    """The last event stored is listed first, as on the page."""
    first = stored_uuids(collector, 2)
    second = stored_uuids(collector, 2)
    listed = [e["uuid"] for e in get(collector, "/api/events").json()["events"]]
    assert [*reversed(second), *reversed(first)] == listed


def test_a_limit_gives_the_newest_events(collector: DemoCollector) -> None:
    """?limit=N is the N events stored last, so the latest event always shows."""
    stored_uuids(collector, 5)
    latest = stored_uuids(collector, 2)
    document = get(collector, "/api/events?limit=2").json()
    assert list(reversed(latest)) == [e["uuid"] for e in document["events"]]


def test_the_cursor_walks_every_event_once_newest_to_oldest(collector: DemoCollector) -> None:
    """Following ``next`` with ?before= pages through every event once; the last page's is null."""
    sent = stored_uuids(collector, 7)
    listed: List[str] = []
    pages = 0
    path = "/api/events?limit=3"
    while True:
        document = get(collector, path).json()
        listed += [e["uuid"] for e in document["events"]]
        pages += 1
        if document["next"] is None:
            break
        path = f"/api/events?limit=3&before={document['next']}"
    assert (list(reversed(sent)), 3) == (listed, pages)


def test_paging_neither_repeats_nor_skips_while_events_arrive(collector: DemoCollector) -> None:
    """Events stored between two pages go before the first page, not into the walk."""
    older = stored_uuids(collector, 4)
    first = get(collector, "/api/events?limit=2").json()
    stored_uuids(collector, 3)  # arrive while the client reads
    rest = get(collector, f"/api/events?limit=10&before={first['next']}").json()
    walked = [e["uuid"] for e in first["events"] + rest["events"]]
    assert (list(reversed(older)), None) == (walked, rest["next"])


def test_a_page_that_holds_the_oldest_event_has_no_next(collector: DemoCollector) -> None:
    """When the limit covers every event, ``next`` is null."""
    stored_uuids(collector, 3)
    assert None is get(collector, "/api/events?limit=3").json()["next"]


@pytest.mark.parametrize("query, message", [
    ("limit=ten", "limit: expected a whole number of events, 1 or more, got 'ten'"),
    ("limit=0", "limit: expected a whole number of events, 1 or more, got '0'"),
    ("limit=-1", "limit: expected a whole number of events, 1 or more, got '-1'"),
    ("before=abc", "before: expected the 'next' cursor of an earlier page "
                   "(a whole number above 0), got 'abc'"),
    ("before=0", "before: expected the 'next' cursor of an earlier page "
                 "(a whole number above 0), got '0'"),
    ("before=9223372036854775808", "before: expected the 'next' cursor of an earlier page "
                                   "(a whole number above 0), got '9223372036854775808'"),
])
def test_a_bad_limit_or_cursor_is_a_400_naming_it(collector: DemoCollector, query: str,
                                                  message: str) -> None:
    """A limit or cursor the API cannot read is refused, naming the parameter."""
    response = get(collector, "/api/events?" + query)
    assert (400, {"error": message}) == (response.status_code, response.json())


@pytest.mark.parametrize("query", ["limit=%ff", "limit=1&before=%ff"])
def test_a_query_that_is_not_utf8_is_a_400_naming_the_parameters(collector: DemoCollector,
                                                                  query: str) -> None:
    """?limit=%ff: a 400 naming limit and before, not the decoder's own words."""
    response = get(collector, "/api/events?" + query)
    assert (400, {"error": "limit, before: the query string is not UTF-8 once "
                           "percent-decoded; give ?limit=N&before=NEXT in ASCII digits"}) == (
        response.status_code, response.json())


# -- /api/stats ----------------------------------------------------------------------


def stats(collector: DemoCollector) -> Dict[str, Any]:
    return get(collector, "/api/stats").json()


def totals(document: Dict[str, Any]) -> Dict[str, int]:
    rates = document["rates"]
    return {name: sum(rates[name]) for name in
            ("stored", "duplicates", "refused_events", "refused_requests", "retry")}


def test_stats_count_each_answer_by_what_it_says_of_the_events(collector: DemoCollector) -> None:
    """A 200 counts its accepted and duplicates, a 422 its refused events, a 403 one request."""
    events = [v2_event(), v2_event(), v2_event()]
    post(collector, "/v2", v2_batch(events))
    post(collector, "/v2", v2_batch(events[:1]))  # a re-delivery
    post(collector, "/v2", v2_batch([v2_event(uuid=None), v2_event(uuid=None)]))
    post(collector, "/v2", v2_batch([v2_event()]), secret=b"wrong")
    document = stats(collector)
    assert ({"stored": 3, "duplicates": 1, "refused_events": 2, "refused_requests": 1,
             "retry": 0}, {"200": 2, "403": 1, "422": 1}
            ) == (totals(document), document["rates"]["statuses"])


def test_stats_place_each_answer_in_its_second(collector: DemoCollector, clock: FakeClock) -> None:
    """The rates list one count per second, oldest first, the current second last."""
    stored_uuids(collector, 2)
    clock.now += 5
    stored_uuids(collector, 3)
    rates = stats(collector)["rates"]
    assert (int(NOW) + 5 - KEEP_SECONDS + 1, 3, 2) == (
        rates["start"], rates["stored"][-1], rates["stored"][-6])


def test_stats_forget_answers_older_than_ten_minutes(collector: DemoCollector,
                                                     clock: FakeClock) -> None:
    """An answer drops out of the rates once it is KEEP_SECONDS old."""
    stored_uuids(collector, 2)
    clock.now += KEEP_SECONDS
    assert ({"stored": 0, "duplicates": 0, "refused_events": 0, "refused_requests": 0,
             "retry": 0}, {}) == (totals(stats(collector)), stats(collector)["rates"]["statuses"])


def test_refusals_past_the_kept_table_are_still_counted(collector: DemoCollector) -> None:
    """The rates count every refused event, though only the latest 1,000 are kept listed."""
    body = v2_batch([v2_event(uuid=None) for _ in range(KEEP_REFUSED + 200)])
    assert 422 == post(collector, "/v2", body).status_code
    listed = get(collector, "/api/events").json()["refused"]
    assert (KEEP_REFUSED + 200, KEEP_REFUSED) == (
        totals(stats(collector))["refused_events"], len(listed))


def test_stats_count_stored_events_by_stream_source_and_action(collector: DemoCollector) -> None:
    """Counts are per stream (v1, v2, v2j), source and action, most first."""
    post(collector, "/v2", v2_batch([v2_event(), v2_event(), v2_event(action="view")]))
    post(collector, "/v2j", v2j_batch([v2_event()]))
    post(collector, "/v1", v1_batch(1))
    assert [
        {"stream": "v2", "source": "test", "action": "click", "count": 2},
        {"stream": "v1", "source": "signup", "action": "account_created", "count": 1},
        {"stream": "v2", "source": "test", "action": "view", "count": 1},
        {"stream": "v2j", "source": "test", "action": "click", "count": 1},
    ] == stats(collector)["counts"]


def test_stats_show_the_fifty_biggest_counts_and_how_many_more(collector: DemoCollector) -> None:
    """A flood of distinct sources shows the 50 with most events and the number left out."""
    events = [v2_event(source=f"source-{n:02}") for n in range(55)] + [v2_event(source="big")]
    post(collector, "/v2", v2_batch(events + [v2_event(source="big")]))
    document = stats(collector)
    assert (SHOWN_COUNTS, "big", 2, 6) == (
        len(document["counts"]), document["counts"][0]["source"],
        document["counts"][0]["count"], document["counts_left_out"])


def test_stats_give_the_delay_from_put_to_stored(collector: DemoCollector) -> None:
    """Each event's receipt time less its client_timestamp, in buckets and percentiles."""
    now_ms = int(NOW * 1000)
    for ago in (5, 50, 60, 2_000):
        stored_uuids(collector, 1, client_timestamp=now_ms - ago)
    stored_uuids(collector, 1, client_timestamp=now_ms + 30)  # a client clock ahead
    delays = stats(collector)["delays"]
    assert ([1, 1, 2, 0, 1, 0, 0, 0], 5, 50, 2_000) == (
        [b["count"] for b in delays["buckets"]], delays["events"], delays["p50_ms"],
        delays["max_ms"])


def test_the_delay_distribution_of_no_events_is_empty() -> None:
    """Without a timestamped event there is no percentile to show."""
    assert (0, None, None) == (delay_distribution([])["events"],
                               delay_distribution([])["p50_ms"],
                               delay_distribution([])["max_ms"])


def test_the_tally_ignores_a_malformed_count_in_an_answer() -> None:
    """A 200 whose counts are not whole numbers adds nothing (the status is still counted)."""
    tally = AnswerTally(lambda: NOW)
    tally.add(200, {"accepted": "3", "duplicates": -1})
    window = tally.window()
    assert (0, 0, {"200": 1}) == (sum(window["stored"]), sum(window["duplicates"]),
                                  window["statuses"])


# -- the command ---------------------------------------------------------------------


@pytest.mark.system
def test_the_demo_collector_listens_on_loopback_unless_told(tmp_path: Any) -> None:
    """python -m demo_app.collector without --host serves 127.0.0.1 only: its page shows events."""
    with serving_collector("demo_app.collector", "--port", "0", "--key", "demo=c2VjcmV0",
                           "--db", str(tmp_path / "events.sqlite3")) as url:
        assert url.startswith("http://127.0.0.1:"), url


# -- reading off the intake's way ------------------------------------------------------


def test_the_reader_of_a_file_does_not_wait_for_the_sink(tmp_path: Any) -> None:
    """A file is read on a connection of its own: a batch holding the sink does not stop it."""
    store = PageStore(str(tmp_path / "events.sqlite3"))
    reader = StoreReader(store)
    answers: List[Any] = []
    try:
        with store._lock:  # as while a batch is being stored
            thread = threading.Thread(target=lambda: answers.append(reader.summary()["total"]))
            thread.start()
            thread.join(5)
        assert [0] == answers
    finally:
        reader.close()
        store.close()


def test_an_in_memory_store_is_read_through_the_sink() -> None:
    """``:memory:`` belongs to the sink's connection, so the reader sees what it stored."""
    store = PageStore(":memory:")
    store.store("v2", [StoredEvent("a0000000-0000-4000-8000-000000000000", "2", b"{}", {})])
    assert 1 == StoreReader(store).summary()["total"]
    store.close()


class StepClock:
    """A monotonic clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_counts_are_reused_for_ten_times_as_long_as_they_took(tmp_path: Any) -> None:
    """A count that took 1 s is served again until 11 s after it began, then counted anew."""
    store = PageStore(str(tmp_path / "events.sqlite3"))
    clock = StepClock()
    reader = StoreReader(store, clock)
    try:
        reader.summary()  # begins at 1, took 1 s: good until 12
        store.store("v2", [StoredEvent("a0000000-0000-4000-8000-000000000000", "2", b"{}", {})])
        seen = [reader.summary()["total"] for _ in range(11)]  # begin at 3, 4, ... 11, 12, 14
        assert [0] * 9 + [1, 1] == seen
    finally:
        reader.close()
        store.close()


# -- whose page ------------------------------------------------------------------------


def test_the_page_refuses_a_request_for_another_name(collector: DemoCollector) -> None:
    """A Host that is not this machine's (DNS rebinding) gets a 403, not the events."""
    response = requests.get(collector.url + "/api/events", timeout=10,
                            headers={"Host": "attacker.example:80"})
    assert (403, "this page answers only to 127.0.0.1, ::1, localhost (asked for "
                 "'attacker.example:80'); to serve it under another name, listen there with "
                 "--host\n") == (response.status_code, response.text)


@pytest.mark.parametrize("host", ["localhost:8080", "127.0.0.1", "[::1]:8080", "LOCALHOST"])
def test_the_page_answers_to_the_names_of_loopback(collector: DemoCollector, host: str) -> None:
    """localhost, 127.0.0.1 and [::1], with or without a port, get the page."""
    response = requests.get(collector.url + "/", timeout=10, headers={"Host": host})
    assert 200 == response.status_code


def test_a_collector_listening_everywhere_answers_to_any_name() -> None:
    """With --host 0.0.0.0 (or ::) the page answers whatever name it was reached by."""
    assert (None, None, frozenset({"localhost", "127.0.0.1", "::1", "collector.lan"})) == (
        page_hosts("0.0.0.0"), page_hosts("[::]"), page_hosts("collector.lan"))
