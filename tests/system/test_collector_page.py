"""The demo collector's live page in a real browser: Debian's chromium, driven by Playwright.

Real signed batches go through the real collector (in this process, served by
waitress, or ``python -m demo_app.collector`` as a subprocess) while the page
polls it; nothing is mocked. Without /usr/bin/chromium or the playwright
package the tests skip, saying what to install (a skip fails the run under CI).
Screenshots go to pytest's temporary directory, never into the tree.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from demo_app.collector import DemoCollector, make_server
from demo_app.event_schemas.event.ttypes import Event, User
from demo_app.screenshot import CHROMIUM, launch_chromium

from tests.support.processes import REPO, serving_collector, signed_post
from tests.system.test_collector import SCHEMA, SECRET, v2_batch

pytestmark = pytest.mark.system

HOSTILE_SCRIPT = '<script>window.__pwned = "script"</script>'
HOSTILE_IMG = '<img src=x onerror="window.__pwned = \'img\'">'
HOSTILE_ATTRIBUTE = '"><svg onload="window.__pwned = \'svg\'">'
ODD_UNICODE = "\u202eevil\u202c 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👩\u200d👩\u200d👧 e\u0301 \ufeff 中文 ﷽"
LONG = "x" * 5000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs the playwright package: pip install -e '.[test]'")
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


class Page:
    """A browser tab and the script errors it showed."""

    def __init__(self, tab: Any) -> None:
        self.tab = tab
        self.errors: List[str] = []
        tab.on("console", lambda message: self.errors.append(message.text)
               if message.type == "error" else None)
        tab.on("pageerror", lambda error: self.errors.append(str(error)))
        tab.on("dialog", lambda dialog: (self.errors.append("dialog: " + dialog.message),
                                         dialog.dismiss()))

    def text(self, selector: str) -> str:
        return str(self.tab.locator(selector).inner_text())

    def rows(self, selector: str) -> List[List[str]]:
        """The text of each cell of each row ``selector`` finds."""
        return list(self.tab.locator(selector).evaluate_all(
            "rows => rows.map(row => Array.from(row.cells, cell => cell.textContent))"))

    def wait_for_text(self, selector: str, text: str) -> None:
        """Wait (10 s at most) until ``selector`` shows exactly ``text``."""
        from playwright.sync_api import expect

        expect(self.tab.locator(selector)).to_have_text(text, timeout=10_000)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[DemoCollector]:
    with make_server("127.0.0.1", 0, keys={"demo": SECRET}, schema=SCHEMA,
                     db_path=str(tmp_path / "events.sqlite3")) as c:
        yield c


@pytest.fixture
def page(browser: Any, collector: DemoCollector) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    tab = Page(context.new_page())
    tab.tab.goto(collector.url + "/")
    tab.wait_for_text("#total", "0")
    yield tab
    context.close()


def event(**fields: Any) -> Event:
    values = dict(source="shop", action="view", noun="product", uuid=str(uuid.uuid4()),
                  client_timestamp=int(time.time() * 1000) - 40)
    values.update(fields)
    return Event(**values)


def send(url: str, *events: Event, secret: bytes = SECRET) -> int:
    """POST one signed v2 batch of ``events``; the status."""
    return signed_post(url, "/v2", v2_batch(list(events)), secret).status_code


# -- what it draws -----------------------------------------------------------------------


def test_the_chart_draws_the_events_that_arrive(page: Page, collector: DemoCollector) -> None:
    """After a batch, the stored-per-second chart holds a step above its baseline."""
    assert 200 == send(collector.url, *[event() for _ in range(6)])
    page.wait_for_text("#stored-window", "6")
    height = page.tab.locator("#rate-chart path.stored").evaluate(
        "path => path.getBBox().height")
    assert height > 10, height


def test_the_refused_chart_draws_refusals(page: Page, collector: DemoCollector) -> None:
    """A batch refused for a bad key shows in the refused chart and its count."""
    assert 403 == send(collector.url, event(), secret=b"not the key")
    page.wait_for_text("#refused-window", "1")
    height = page.tab.locator("#refused-chart path.refused").evaluate(
        "path => path.getBBox().height")
    assert height > 10, height


def test_a_request_refused_whole_is_listed_with_its_error(page: Page,
                                                         collector: DemoCollector) -> None:
    """A 403 is listed among the refused, with the error the publisher was answered."""
    assert 403 == send(collector.url, event(), secret=b"not the key")
    page.wait_for_text("#refused li .what", "v2 request refused whole: 403")
    assert "signature does not match a key this collector holds" == page.text(
        "#refused li .reason")


def test_fields_are_shown_by_name_with_a_schema(page: Page, collector: DemoCollector) -> None:
    """With --schema an event's fields are listed by their names."""
    assert 200 == send(collector.url, event(tags={"product": "teapot"}))
    page.wait_for_text("#events li dt", "tags")
    assert '{"product":"teapot"}' == page.text("#events li dd")


def test_fields_are_shown_by_id_without_a_schema(browser: Any, tmp_path: Path) -> None:
    """Without --schema an event's fields are listed by their Thrift field ids."""
    with make_server("127.0.0.1", 0, keys={"demo": SECRET},
                     db_path=str(tmp_path / "events.sqlite3")) as collector:
        context = browser.new_context()
        page = Page(context.new_page())
        page.tab.goto(collector.url + "/")
        assert 200 == send(collector.url, event(tags={"product": "teapot"}))
        page.wait_for_text("#total", "1")
        names = page.tab.locator("#events li dt").all_inner_texts()
        context.close()
    assert ["field 1", "field 2", "field 3", "field 4", "field 5", "field 10"] == names


def test_the_delay_distribution_counts_each_event(page: Page, collector: DemoCollector) -> None:
    """Each event's put-to-stored delay lands in one bucket; the headline gives the median."""
    now = int(time.time() * 1000)
    assert 200 == send(collector.url, event(client_timestamp=now - 3_000),
                       event(client_timestamp=now - 4_000))
    page.wait_for_text("#delays .bar:nth-child(5) .num", "2")
    assert page.text("#delay-median").endswith(" s")


# -- live ------------------------------------------------------------------------------------


def test_counts_update_as_events_arrive_without_a_reload(browser: Any, tmp_path: Path) -> None:
    """The page of python -m demo_app.collector follows new batches in place."""
    with serving_collector("demo_app.collector", "--port", "0", "--key", "demo=c2VjcmV0",
                           "--db", str(tmp_path / "events.sqlite3"), "--schema", SCHEMA) as url:
        context = browser.new_context()
        page = Page(context.new_page())
        page.tab.goto(url + "/")
        page.wait_for_text("#total", "0")
        page.tab.evaluate("window.__same_document = true")
        assert 200 == send(url, event(), event(), secret=b"secret")
        page.wait_for_text("#total", "2")
        assert [["v2", "shop", "view", "2"]] == page.rows("#counts tbody tr")
        assert 200 == send(url, event(source="forum", action="vote"), secret=b"secret")
        page.wait_for_text("#total", "3")
        assert ([["v2", "shop", "view", "2"], ["v2", "forum", "vote", "1"]], True) == (
            page.rows("#counts tbody tr"),
            page.tab.evaluate("window.__same_document === true"))
        context.close()


def test_the_page_says_when_the_collector_is_gone(browser: Any, tmp_path: Path) -> None:
    """When the collector stops answering, the status line says so instead of going stale."""
    collector = make_server("127.0.0.1", 0, keys={"demo": SECRET},
                            db_path=str(tmp_path / "events.sqlite3"))
    try:
        context = browser.new_context()
        page = Page(context.new_page())
        page.tab.goto(collector.url + "/")
        page.wait_for_text("#total", "0")
    finally:
        collector.shutdown()
    from playwright.sync_api import expect

    expect(page.tab.locator("#status")).to_contain_text("cannot reach the collector",
                                                        timeout=10_000)
    context.close()


# -- hostile values --------------------------------------------------------------------------


def test_markup_in_fields_is_shown_as_text_and_never_run(page: Page, collector: DemoCollector
                                                         ) -> None:
    """<script>, onerror and onload in field values are shown literally; none of it runs."""
    assert 200 == send(collector.url, event(source=HOSTILE_SCRIPT, noun=HOSTILE_IMG,
                                            tags={"attribute": HOSTILE_ATTRIBUTE}))
    page.wait_for_text("#total", "1")
    page.tab.wait_for_timeout(1500)  # a poll more: anything injected has had time to run
    card = page.text("#events li")
    assert (True, True, True, 0, None) == (
        HOSTILE_SCRIPT in card, HOSTILE_IMG in card, HOSTILE_ATTRIBUTE.replace('"', '\\"') in card,
        page.tab.locator("#events img, #events script, #events svg").count(),
        page.tab.evaluate("window.__pwned"))


def test_markup_in_a_refusal_reason_is_shown_as_text(page: Page, collector: DemoCollector) -> None:
    """A refused uuid holding markup is named in the reason as text, not as an element."""
    assert 422 == send(collector.url, event(uuid=HOSTILE_IMG))
    page.wait_for_text("#refused li .reason", f"uuid: {HOSTILE_IMG!r} is not a UUID")
    assert (0, None) == (page.tab.locator("#refused img").count(),
                         page.tab.evaluate("window.__pwned"))


def test_a_long_source_is_cut_in_the_counts(page: Page, collector: DemoCollector) -> None:
    """A source of 5,000 characters shows its first 80 and an ellipsis."""
    assert 200 == send(collector.url, event(source=LONG))
    page.wait_for_text("#total", "1")
    assert [["v2", "x" * 80 + "…", "view", "1"]] == page.rows("#counts tbody tr")


def test_odd_unicode_is_shown_exactly(page: Page, collector: DemoCollector) -> None:
    """Direction overrides, astral letters, joined emoji and combining marks arrive intact."""
    assert 200 == send(collector.url, event(user=User(user_id=ODD_UNICODE)))
    page.wait_for_text("#total", "1")
    shown = page.tab.locator("#events li dd").first.evaluate("dd => dd.textContent")
    assert '{"user_id":"' + ODD_UNICODE + '"}' == shown


def test_a_long_value_is_cut_saying_how_much(page: Page, collector: DemoCollector) -> None:
    """A 5,000-character value shows its first 300 and the count of the rest."""
    assert 200 == send(collector.url, event(user=User(user_id=LONG)))
    page.wait_for_text("#events li .cut", " … (4714 more characters)")


# -- a phone ---------------------------------------------------------------------------------


def test_the_page_fits_a_narrow_viewport(browser: Any, collector: DemoCollector) -> None:
    """At 360 px wide nothing scrolls sideways, even with a long unbroken value."""
    assert 200 == send(collector.url, event(user=User(user_id=LONG)),
                       event(source="a-source-name-without-any-break-" * 4))
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = Page(context.new_page())
    page.tab.goto(collector.url + "/")
    page.wait_for_text("#total", "2")
    widths = page.tab.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth,"
        " document.getElementById('rate-chart').getBoundingClientRect().width]")
    context.close()
    assert widths[0] <= widths[1] and 0 < widths[2] <= widths[1], widths


def test_the_chart_labels_stay_readable_on_a_phone(browser: Any, collector: DemoCollector) -> None:
    """At 360 px wide the charts' labels are drawn at least 10 px tall, not scaled down."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = Page(context.new_page())
    page.tab.goto(collector.url + "/")
    page.wait_for_text("#total", "0")
    heights = page.tab.locator("svg.chart text").evaluate_all(
        "labels => labels.map(label => label.getBoundingClientRect().height)")
    context.close()
    assert len(heights) == 12 and min(heights) >= 10, heights


def test_the_page_loads_nothing_from_another_site(browser: Any, collector: DemoCollector) -> None:
    """Every request the page makes goes to the collector itself: it works offline."""
    context = browser.new_context()
    page = Page(context.new_page())
    requested: List[str] = []
    page.tab.on("request", lambda request: requested.append(request.url))
    page.tab.goto(collector.url + "/")
    assert 200 == send(collector.url, event())
    page.wait_for_text("#total", "1")
    context.close()
    elsewhere = [url for url in requested if not url.startswith(collector.url + "/")]
    assert ([], True) == (elsewhere, any(url.endswith("/page.js") for url in requested))


# -- the console -----------------------------------------------------------------------------


def test_the_console_shows_no_script_errors(page: Page, collector: DemoCollector) -> None:
    """Through traffic of every kind (hostile included) the page logs no error."""
    assert 200 == send(collector.url, event(source=HOSTILE_SCRIPT, noun=HOSTILE_IMG),
                       event(user=User(user_id=LONG + ODD_UNICODE)))
    assert 422 == send(collector.url, event(uuid=HOSTILE_IMG))
    assert 403 == send(collector.url, event(), secret=b"not the key")
    page.wait_for_text("#total", "2")
    page.wait_for_text("#refused-window", "2")
    page.tab.wait_for_timeout(2500)  # two polls more
    assert [] == page.errors


# -- the screenshot --------------------------------------------------------------------------


def test_the_screenshot_command_writes_a_png_of_the_page(browser: Any, tmp_path: Path) -> None:
    """python -m demo_app.screenshot (make screenshot) writes a PNG of the size asked, there."""
    path = tmp_path / "shots" / "collector-page.png"
    done = subprocess.run([sys.executable, "-m", "demo_app.screenshot", str(path), "--width",
                           "800", "--height", "900"], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    header = path.read_bytes()[:24] if path.exists() else b""
    assert (0, f"wrote {path}\n", b"\x89PNG\r\n\x1a\n", (800, 900)) == (
        done.returncode, done.stdout, header[:8], struct.unpack(">II", header[16:24])), done.stderr
