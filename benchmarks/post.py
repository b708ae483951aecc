"""The cost of one POST: CPU per ``Poster.post`` of the same batch to the counting collector.

The collector (``benchmarks.collector``) runs in its own process, so the CPU
time of this one is the sender's alone (all its threads, the deadline watchdog
included). The batch is 100 typical v2 events (about 54 KB, 13 KB gzipped).
Reported: the whole ``Poster.post`` (gzip, HMAC, HTTP) and, measured apart in
the same run, gzip and HMAC alone, so that the HTTP share is their
difference. ``python -m benchmarks.post`` prints the figures; it only uses
``Poster(url, key_name, secret, timeout=, gzip_level=, metrics=)`` and
``post(body, count)``, so the same file measures an older sender too.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

from publisher.send.batches import build_body
from publisher.metrics.counters import Metrics
from publisher.send.post import Poster, gzip_compress, sign

from .pipeline import Collector
from .sample import event_pool

EVENTS = 100


@dataclass
class PostResult:
    body_bytes: int
    post_us: float  # CPU per Poster.post
    gzip_sign_us: float  # CPU per gzip + HMAC of the same body

    @property
    def http_us(self) -> float:
        return self.post_us - self.gzip_sign_us


def _cpu_per_call(call: Callable[[], object], count: int, rounds: int) -> float:
    """Median over ``rounds`` of the process CPU per call, in microseconds."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            call()
        samples.append((time.process_time() - started) / count * 1e6)
    return statistics.median(samples)


def measure(posts: int = 1000, rounds: int = 5) -> PostResult:
    body = build_body("2", event_pool(EVENTS))
    collector = Collector()
    try:
        sender = Poster(f"http://127.0.0.1:{collector.port}/v2", "BenchKey", b"bench secret",
                        timeout=10.0, gzip_level=6, metrics=Metrics())
        try:
            def post() -> None:
                if not sender.post(body, EVENTS).ok:
                    raise RuntimeError("the counting collector refused a POST")

            post()  # connect outside the measurement
            post_us = _cpu_per_call(post, posts, rounds)
        finally:
            sender.close()
    finally:
        collector.stop()
    gzip_sign_us = _cpu_per_call(
        lambda: (gzip_compress(body, 6), sign("BenchKey", b"bench secret", body)), posts, rounds
    )
    return PostResult(len(body), post_us, gzip_sign_us)


def main() -> int:
    r = measure()
    print(f"Poster.post of a {r.body_bytes}-byte batch: {r.post_us:.1f} us CPU; "
          f"gzip + HMAC {r.gzip_sign_us:.1f} us; HTTP {r.http_us:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
