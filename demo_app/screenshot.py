"""``make screenshot``: the collector's page, after ten minutes of traffic, as a PNG for the docs.

::

    python -m demo_app.screenshot docs/_static/collector-page.png

It serves the demo collector (:mod:`demo_app.collector`) on 127.0.0.1 with a
clock of its own, sends it ten simulated minutes of signed batches in a few
seconds (two apps' v2 events, legacy v1 signups, a few events without a uuid,
a spell of a publisher with the wrong key), then opens the page in Debian's
``chromium`` through Playwright and saves what it shows. The traffic is seeded:
every run draws the same picture.

Playwright drives the system's browser (:data:`CHROMIUM`); it never downloads
one of its own, so ``playwright install`` is not needed (``apt-get install
chromium`` is).
"""
from __future__ import annotations

import argparse
import datetime
import email.utils
import gzip
import math
import random
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, List, Optional, Sequence

import requests

from baseplate_events import Event as V1Event
from baseplate_events import serialize_v1_event, serialize_v2_event
from baseplate_events.collector.service.intake import sign

from .collector import DemoCollector, make_server
from .event_schemas.event.ttypes import Event, Request

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ManualClock", "launch_chromium", "main", "send_traffic"]

#: Debian's chromium; Playwright drives it instead of a browser of its own
CHROMIUM = "/usr/bin/chromium"
#: a headless browser that runs as root, needs no GPU and calls nowhere by itself
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
)
SCHEMA = f"{Event.__module__}:{Event.__name__}"
SECRET = b"screenshot-secret"
#: the simulated traffic ends here (UTC), so the picture is the same every run
END = datetime.datetime(2026, 5, 4, 12, 0, tzinfo=datetime.timezone.utc).timestamp()


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless, through Playwright."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))


class ManualClock:
    """Seconds since the epoch, moved by hand: the collector's clock while traffic is replayed."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _post(session: requests.Session, collector: DemoCollector, path: str, body: bytes,
          now: float, secret: bytes = SECRET) -> int:
    response = session.post(collector.url + path, data=gzip.compress(body), timeout=10, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(now, usegmt=True),
        "X-Signature": f"key=demo, mac={sign(secret, body)}"})
    return response.status_code


def _v2_batch(events: List[Event]) -> bytes:
    items = [serialize_v2_event(e) for e in events]
    return b'{"1":{"lst":["rec",%d,' % len(items) + b",".join(items) + b"]}}"


def _shop_event(rng: random.Random, now_ms: int) -> Event:
    action, noun = rng.choice([("view", "product"), ("view", "product"), ("search", "results"),
                               ("add", "cart_item"), ("purchase", "order")])
    return Event(source="demo-shop", action=action, noun=noun, uuid=_uuid(rng),
                 client_timestamp=now_ms - _delay(rng),
                 request=Request(domain="shop.example", base_url=f"/products/{noun}",
                                 status_code=200),
                 tags={"product": rng.choice(["kettle", "teapot", "mug", "tea"])})


def _forum_event(rng: random.Random, now_ms: int) -> Event:
    action = rng.choice(["view", "view", "vote", "submit"])
    return Event(source="demo-forum", action=action, noun="post",
                 uuid=_uuid(rng), client_timestamp=now_ms - _delay(rng))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _delay(rng: random.Random) -> int:
    """Put to stored: mostly the publisher's batching wait, now and then a retry."""
    if rng.random() < 0.03:
        return int(rng.uniform(1_500, 9_000))
    return int(rng.lognormvariate(math.log(120), 0.8))


def send_traffic(collector: DemoCollector, clock: ManualClock, seconds: int = 600,
                 seed: int = 26) -> None:
    """``seconds`` of signed batches, one second at a time, ending at the clock's time."""
    rng = random.Random(seed)
    end = clock.now
    with requests.Session() as session:
        for second in range(seconds):
            clock.now = end - seconds + second + 1
            now_ms = int(clock.now * 1000)
            rate = 14 + 9 * math.sin(second / 60) + (25 if 380 <= second < 410 else 0)
            count = max(0, int(rng.gauss(rate, 3)))
            events = [(_shop_event if rng.random() < 0.6 else _forum_event)(rng, now_ms)
                      for _ in range(count)]
            if events:
                _post(session, collector, "/v2", _v2_batch(events), clock.now)
            if second % 53 == 7:  # an app that forgot the uuid: the collector names it
                lost = Event(source="demo-shop", action="view", noun="product",
                             client_timestamp=now_ms)
                _post(session, collector, "/v2", _v2_batch([lost]), clock.now)
            if second % 9 == 0:  # the forum's legacy signups
                signup = V1Event("signup", "account_created", timestamp=datetime.datetime
                                 .fromtimestamp(clock.now - 0.2, datetime.timezone.utc))
                signup.set_field("user", f"u{rng.randrange(1000)}")
                _post(session, collector, "/v1", b"[" + serialize_v1_event(signup) + b"]",
                      clock.now)
            if 470 <= second < 490:  # a publisher configured with the wrong key
                _post(session, collector, "/v2", _v2_batch([_shop_event(rng, now_ms)]),
                      clock.now, secret=b"an old key")


def take(path: Path, width: int = 1200, height: int = 1500) -> None:
    """Serve, replay the traffic, and save the page as ``path`` (PNG)."""
    from playwright.sync_api import sync_playwright

    clock = ManualClock(END)
    with tempfile.TemporaryDirectory(prefix="collector-screenshot-") as workdir:
        with make_server("127.0.0.1", 0, keys={"demo": SECRET}, clock=clock, schema=SCHEMA,
                         db_path=str(Path(workdir) / "events.sqlite3")) as collector:
            send_traffic(collector, clock)
            total = collector.store.summary()["total"]
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    page = browser.new_page(viewport={"width": width, "height": height})
                    page.goto(collector.url + "/")
                    page.locator("#total").filter(has_text=str(total)).wait_for(timeout=15_000)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(path))
                finally:
                    browser.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_app.screenshot",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing: install Debian's browser with "
                     "`apt-get install chromium`")
    try:
        import playwright  # noqa: F401
    except ImportError:
        parser.error("the playwright package is missing: pip install -e '.[test]'")
    take(args.path, args.width, args.height)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
