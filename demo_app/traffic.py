"""The demo's burst of real HTTP requests at both apps, and what each answer says was put.

The plan is a seeded, shuffled mix of the apps' views, so every run does the
same work. Each app answers JSON naming the uuid of every event it put; a
``503`` (the queue stayed full for the put timeout) is retried after a short
pause, as a client honouring ``Retry-After`` would, and counted.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import requests


PRODUCTS = ("kettle", "teapot", "mug", "tea")


@dataclass(frozen=True)
class PlannedRequest:
    app: str  # "pyramid" or "flask"
    method: str
    path: str
    body: Optional[Dict[str, Any]] = None
    user: Optional[str] = None


@dataclass
class TrafficOutcome:
    """What the burst did: the events each stream put, and what went wrong."""

    put: Dict[str, List[str]] = field(default_factory=dict)  # stream -> uuids
    retries: int = 0
    failures: List[str] = field(default_factory=list)

    def add(self, entries: List[Dict[str, Any]], app: str) -> None:
        for entry in entries:
            self.put.setdefault(stream_name(app, entry["queue"]), []).append(entry["uuid"])


def stream_name(app: str, queue: str) -> str:
    """How the summary names a stream of events: the app and the event version."""
    return f"{app} v{queue[1:]}" if queue.startswith("v") else f"{app} {queue}"


def plan(count: int, seed: int = 6) -> List[PlannedRequest]:
    """``count`` requests: about half to the shop (Pyramid), half to the forum (Flask),
    one in ten of the forum's a legacy v1 signup."""
    rng = random.Random(seed)
    requests_: List[PlannedRequest] = []
    for n in range(count):
        product = rng.choice(PRODUCTS)
        user = f"u{rng.randrange(1000)}" if rng.random() < 0.7 else None
        if n % 2 == 0:
            requests_.append(rng.choice([
                PlannedRequest("pyramid", "GET", f"/products/{product}"),
                PlannedRequest("pyramid", "GET", f"/search?q={product[:3]}"),
                PlannedRequest("pyramid", "POST", "/cart",
                               {"product_id": product, "quantity": rng.randint(1, 3)}),
                PlannedRequest("pyramid", "POST", "/checkout",
                               {"items": [{"product_id": product, "quantity": 1}]}),
            ]))
        elif n % 10 == 1:
            requests_.append(PlannedRequest(
                "flask", "POST", "/signup",
                {"plan": rng.choice(["free", "plus"]), "email": f"user{n}@example.com"}))
        else:
            post_id = rng.randrange(1, 500)
            requests_.append(rng.choice([
                PlannedRequest("flask", "POST", "/posts",
                               {"community": rng.choice(["tea", "kettles"]), "title": "Hello"},
                               user),
                PlannedRequest("flask", "GET", f"/posts/{post_id}", None, user),
                PlannedRequest("flask", "POST", f"/posts/{post_id}/vote",
                               {"direction": rng.choice([1, -1])}, user),
            ]))
    return requests_


def drive(
    calls: List[PlannedRequest],
    base_urls: Dict[str, str],
    *,
    concurrency: int = 8,
    max_attempts: int = 20,
    time_limit: float = 60.0,
    on_done: Optional[Callable[[], None]] = None,
) -> TrafficOutcome:
    """Send every planned request over keep-alive sessions (one per worker thread).

    Requests not sent within ``time_limit`` seconds (a stalled pipeline keeps
    every queue full) are counted as failures rather than waited for.
    """
    deadline = time.monotonic() + time_limit
    outcome = TrafficOutcome()
    lock = threading.Lock()
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["User-Agent"] = "baseplate-events-demo/0.1"
        return local.session  # type: ignore[no-any-return]

    def one(call: PlannedRequest) -> None:
        headers = {"X-User-Id": call.user} if call.user else {}
        url = base_urls[call.app] + call.path
        for attempt in range(max_attempts):
            if time.monotonic() > deadline:
                with lock:
                    outcome.failures.append(f"{call.method} {call.path}: not sent in time")
                return
            try:
                response = session().request(call.method, url, json=call.body,
                                             headers=headers, timeout=10)
            except requests.RequestException as exc:
                problem = f"{call.method} {call.path}: {exc}"
            else:
                if response.status_code == 503:
                    with lock:
                        outcome.retries += 1
                    threading.Event().wait(0.05 * (attempt + 1))
                    continue
                if response.status_code < 300:
                    with lock:
                        outcome.add(response.json()["events"], call.app)
                    return
                problem = f"{call.method} {call.path}: HTTP {response.status_code}"
            with lock:
                outcome.failures.append(problem)
            return
        with lock:
            outcome.failures.append(f"{call.method} {call.path}: queue full {max_attempts} times")

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="driver")
    try:
        for future in as_completed([pool.submit(one, call) for call in calls]):
            future.result()
            if on_done is not None:
                on_done()
    except BaseException:
        # Ctrl-C: drop the requests not yet sent rather than wait for them.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return outcome
