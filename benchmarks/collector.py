"""A minimal event collector for the publisher benchmark: counts, never parses JSON.

``python -m benchmarks.collector [--delay SECONDS]`` prints ``port N`` on one
line, then serves until killed. Every ``POST`` whose headers pass the
collector's intake (:func:`baseplate_events.collector.service.intake.check_headers`:
the signature's form, a current ``Date``, the encodings) is answered 200
(after ``--delay`` seconds, to play a slow collector); any other gets the
intake's status and is counted as ``refused``. ``GET /stats`` returns JSON
with what arrived.

It is kept cheap, because it shares the machine's two cores with the
publisher being measured: the body is neither gunzipped whole nor its HMAC
checked (together 0.7 µs per event, the publisher's CPU to share). It
inflates only the first bytes of each gzipped body to read the batch's event
count from its v2 header (``["rec",N,``) and takes the uncompressed size from
the gzip trailer.
"""
from __future__ import annotations

import argparse
import json
import re
import socketserver
import sys
import threading
import time
import zlib
from typing import BinaryIO, Dict, Optional, Tuple

from baseplate_events.collector.service.intake import Refused, check_headers

_COUNT = re.compile(rb'^\{"1":\{"lst":\["rec",(\d+)')
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Stats:
    """Totals over every batch received; updated under a lock by handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events = 0
        self.batches = 0
        self.body_bytes = 0
        self.request_bytes = 0
        self.raw_bytes = 0
        self.first = 0.0
        self.last = 0.0
        self.refused = 0

    def refuse(self) -> None:
        with self.lock:
            self.refused += 1

    def add(self, events: int, body: int, request: int, raw: int) -> None:
        now = time.monotonic()
        with self.lock:
            if not self.batches:
                self.first = now
            self.events += events
            self.batches += 1
            self.body_bytes += body
            self.request_bytes += request
            self.raw_bytes += raw
            self.last = now

    def snapshot(self) -> Dict[str, float]:
        with self.lock:
            return {
                "events": self.events,
                "batches": self.batches,
                "body_bytes": self.body_bytes,
                "request_bytes": self.request_bytes,
                "raw_bytes": self.raw_bytes,
                "first": self.first,
                "last": self.last,
                "refused": self.refused,
            }


def count_events(body: bytes) -> int:
    """The event count in a gzipped v2 batch's header, or by scanning the whole batch."""
    head = zlib.decompressobj(47).decompress(body, 64)
    match = _COUNT.match(head)
    if match:
        return int(match.group(1))
    return zlib.decompress(body, 47).count(b'"5":{"str":')  # 1/2j: one uuid per event


class Headers(Dict[str, str]):
    """A request's headers by lower-case name; ``get`` takes any case, as the intake asks."""

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:  # type: ignore[override]
        return super().get(name.lower(), default)


def read_request(rfile: BinaryIO) -> Optional[Tuple[bytes, Headers, bytes, int]]:
    """(request line, headers, body, bytes read) of the next request on a keep-alive connection."""
    line = rfile.readline()
    if not line:
        return None
    size = len(line)
    headers = Headers()
    while True:
        header = rfile.readline()
        size += len(header)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    length = int(headers.get("content-length") or 0)
    body = rfile.read(length) if length else b""
    return line, headers, body, size + len(body)


def serve(delay: float, port: int = 0) -> socketserver.ThreadingTCPServer:
    stats = Stats()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                request = read_request(self.rfile)
                if request is None:
                    return
                line, headers, body, size = request
                if line.startswith(b"GET /stats"):
                    payload = json.dumps(stats.snapshot()).encode()
                    self.wfile.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                    continue
                try:
                    check_headers(headers, time.time())
                except Refused as refusal:
                    stats.refuse()
                    message = str(refusal).encode()
                    self.wfile.write(b"HTTP/1.1 %d Refused\r\nContent-Length: %d\r\n\r\n%s"
                                     % (refusal.status, len(message), message))
                    continue
                if delay:
                    time.sleep(delay)
                raw = int.from_bytes(body[-4:], "little") if len(body) >= 4 else 0
                stats.add(count_events(body) if body else 0, len(body), size, raw)
                self.wfile.write(_OK)

    return _Server(("127.0.0.1", port), Handler)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A publisher that hangs up mid-request (a timeout, a shutdown) is no error here."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collector")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    server = serve(args.delay)
    sys.stdout.write(f"port {server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
