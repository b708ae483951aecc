"""A model of baseplate.py 2.7.1's event publisher loop: the publisher baseline.

baseplate is not a dependency of this project, so ``make bench`` measures this
model instead; ``python -m benchmarks --baseplate-python /path/to/venv/bin/python``
measures the real ``baseplate.sidecars.event_publisher`` beside it.

What it models, as baseplate 2.7.1 does it (written from its documented
behaviour, not copied):

- one message per loop turn: ``get(timeout=0.2)`` (a non-blocking receive,
  then ``select`` until the deadline);
- every message goes through a time-limited batch (age checked with
  ``time.time()`` on each add) around a v2 batch of at most 500 KiB that keeps
  the event bytes in a list and writes ``{"1":{"lst":["rec",N,...]}}``;
- a full or 1-second-old batch is published in the loop itself: no draining
  while it is sent: ``gzip.compress`` at the default level 9, HMAC-SHA256 of the
  uncompressed body, one ``requests.Session`` POST with a 3 s timeout,
  retried with exponential backoff (2 s base) for up to 5 minutes.

Usage: ``python -m benchmarks.baseline_publisher --queue-name NAME config.ini``
(the same ``[event-publisher:NAME]`` section as the real publisher).
"""
from __future__ import annotations

import argparse
import base64
import configparser
import email.utils
import gzip
import hashlib
import hmac
import select
import signal
import sys
import time
from typing import List, Optional

import posix_ipc
import requests

MAX_BATCH_AGE = 1.0
MAX_BATCH_SIZE = 500 * 1024
POST_TIMEOUT = 3
RETRY_BACKOFF = 2.0
MAX_RETRY_TIME = 5 * 60
HEADER = '{"1":{"lst":["rec",%01d,'
END = b"]}}"


class Full(Exception):
    """The batch cannot take this message; publish first."""


class Batch:
    """baseplate's V2Batch inside its TimeLimitedBatch."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.items: List[bytes] = []
        self.size = len(HEADER) + len(END)
        self.start: Optional[float] = None

    def add(self, item: Optional[bytes]) -> None:
        if self.start and time.time() - self.start >= MAX_BATCH_AGE:
            raise Full
        if item:
            if self.size + len(item) + 1 > MAX_BATCH_SIZE:
                raise Full
            self.items.append(item)
            self.size += len(item) + 1
        if not self.start:
            self.start = time.time()

    def serialize(self) -> bytes:
        return (HEADER % len(self.items)).encode() + b",".join(self.items) + END


class Publisher:
    def __init__(self, url: str, key_name: str, key_secret: bytes) -> None:
        self.url = url
        self.key_name = key_name
        self.key_secret = key_secret
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "baseplate.py-BatchPublisher/2.7.1"

    def publish(self, count: int, body: bytes) -> None:
        if not count:
            return
        compressed = gzip.compress(body)
        digest = hmac.new(self.key_secret, body, hashlib.sha256).hexdigest()
        headers = {
            "Date": email.utils.formatdate(usegmt=True),
            "User-Agent": "baseplate-event-publisher/1.0",
            "Content-Type": "application/json",
            "X-Signature": f"key={self.key_name}, mac={digest}",
            "Content-Encoding": "gzip",
        }
        deadline = time.monotonic() + MAX_RETRY_TIME
        attempt = 0
        while time.monotonic() < deadline:
            try:
                response = self.session.post(
                    self.url, headers=headers, data=compressed, timeout=POST_TIMEOUT, stream=False
                )
                response.raise_for_status()
                return
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 500
                if status < 500 and status != 422:
                    raise
            except OSError:
                pass
            time.sleep(min(RETRY_BACKOFF * 2**attempt, max(0.0, deadline - time.monotonic())))
            attempt += 1
        raise RuntimeError("could not send batch")


def get(queue: posix_ipc.MessageQueue, timeout: float) -> Optional[bytes]:
    """baseplate's MessageQueue.get: receive, else wait in select until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return queue.receive()[0]  # type: ignore[no-any-return]
        except posix_ipc.BusyError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            select.select([queue.mqd], [], [], remaining)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_publisher")
    parser.add_argument("config_file")
    parser.add_argument("--queue-name", default="main")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    ini = configparser.RawConfigParser()
    ini.read(args.config_file)
    section = ini["event-publisher:" + args.queue_name]
    url = "{}://{}/v{}".format(
        section.get("collector.scheme", "https"),
        section["collector.hostname"],
        section.get("collector.version", "2"),
    )
    publisher = Publisher(url, section["key.name"], base64.b64decode(section["key.secret"]))
    queue = posix_ipc.MessageQueue("/events-" + args.queue_name)
    queue.block = False
    batch = Batch()
    while True:
        message = get(queue, 0.2)
        try:
            batch.add(message)
            continue
        except Full:
            pass
        try:
            publisher.publish(len(batch.items), batch.serialize())
        except Exception as exc:  # baseplate logs and drops the batch
            sys.stderr.write(f"publishing failed: {exc!r}\n")
        batch.reset()
        batch.add(message)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
