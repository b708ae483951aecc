"""Bounded work before the signature: at most 16 gzip members, none empty, measured in CPU.

The CPU a hostile 1 MiB body costs the intake (unsigned, so it is refused) is
compared, in this process and this run, with what an honest 1 MiB batch
costs: gunzip plus HMAC. CPU time (``time.thread_time``), the least of a few
runs, so that other processes on the machine do not count.
"""
from __future__ import annotations

import email.utils
import gzip
import json
import os
import time
import uuid
from typing import Callable, Dict

import pytest

from baseplate_events.collector.service.intake import (
    MAX_GZIP_MEMBERS,
    Refused,
    check_batch,
    gunzip_bounded,
    sign,
)

SECRET = b"gzip bound test secret.........."
KEYS = {"demo": SECRET}
LIMIT = 1 << 20
NOW = 1_800_000_000.0


def headers(mac: str) -> Dict[str, str]:
    return {"X-Signature": f"key=demo, mac={mac}", "Content-Type": "application/json",
            "Content-Encoding": "gzip", "Date": email.utils.formatdate(NOW, usegmt=True)}


def honest_batch() -> bytes:
    """A v2j batch of publisher-like events, 1 MiB uncompressed."""
    events = []
    size = 2
    while size < LIMIT - 400:
        event = json.dumps({"1": {"str": "shop"}, "2": {"str": "view"},
                            "5": {"str": str(uuid.uuid4())},
                            "7": {"str": os.urandom(60).hex()}}, separators=(",", ":"))
        events.append(event)
        size += len(event) + 1
    return ("[" + ",".join(events) + "]").encode()


def cpu(work: Callable[[], object], runs: int = 5) -> float:
    """The least CPU time, in seconds, of ``runs`` calls of ``work``."""
    best = float("inf")
    for _ in range(runs):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best


def refused(body: bytes) -> Refused:
    with pytest.raises(Refused) as caught:
        check_batch(headers("0" * 64), body, KEYS, NOW, max_body=LIMIT)
    return caught.value


def members(count: int, each: bytes) -> bytes:
    return b"".join(gzip.compress(each, mtime=0) for _ in range(count))


def test_more_than_16_members_is_a_400() -> None:
    """17 members of one byte each: refused, naming the bound."""
    problem = refused(members(MAX_GZIP_MEMBERS + 1, b"["))
    assert (400, "body holds more than 16 gzip members; send the batch as one gzip stream") == (
        problem.status, str(problem))


def test_16_members_are_taken() -> None:
    """16 members (a concatenation some tools make) decompress as one body."""
    assert b"[" * 16 == gunzip_bounded(members(16, b"["), LIMIT)


def test_an_empty_member_is_a_400() -> None:
    """A member holding nothing, after a good one: refused, naming which."""
    problem = refused(members(1, b"[1]") + members(1, b""))
    assert (400, "gzip member 2 of the body is empty; send the batch as one gzip stream") == (
        problem.status, str(problem))


@pytest.mark.parametrize("hostile", ["empty members", "17 members of 60 KiB", "a bomb"])
def test_a_hostile_1_mib_body_costs_less_cpu_than_an_honest_batch(hostile: str) -> None:
    """Refusing a hostile 1 MiB body costs at most gunzip + HMAC of an honest 1 MiB batch."""
    plain = honest_batch()
    body = gzip.compress(plain)
    bodies = {
        "empty members": members(LIMIT // 20, b""),
        "17 members of 60 KiB": b"".join(gzip.compress(os.urandom(60 << 10), mtime=0)
                                         for _ in range(17)),
        "a bomb": gzip.compress(b"\0" * (64 * LIMIT)),
    }
    hostile_body = bodies[hostile]
    assert len(hostile_body) <= LIMIT + (1 << 16)
    honest = cpu(lambda: (gunzip_bounded(body, LIMIT), sign(SECRET, plain)))
    assert 200 != refused(hostile_body).status
    spent = cpu(lambda: refused(hostile_body))
    assert spent <= honest, f"{hostile}: {spent * 1000:.2f} ms of CPU against {honest * 1000:.2f}"
