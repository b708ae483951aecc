"""A strict, scriptable event collector on 127.0.0.1, port 0, for the publisher's tests.

It checks what the reference collector checks, with the reference collector's
own intake (:func:`baseplate_events.collector.service.intake.check_batch`: the
signature, a ``Date`` within five minutes, the encodings, the gzip body and
its HMAC-SHA256), and, more strictly, that the publisher sends each header in
its one canonical form: the path ``/v{version}``, ``Content-Type:
application/json`` and ``Content-Encoding: gzip`` exactly, a ``User-Agent``, a
GMT ``Date`` and ``X-Signature: key=NAME, mac=<64 lower-case hex digits>``.
A wrong key or mac is answered 403; any other failed check is answered 400 and
recorded in :attr:`LocalCollector.problems`, which every test expects empty.

It can be scripted to misbehave: a spell of 503s (or any status: a blanket
400 or 500) with an optional ``Retry-After``, 413 for large bodies, 422 (or
500) for poison events, a connection reset mid-request, slow answers, answers
that never end, raw answers in place of its own (a redirect, an HTML page) and
interim 1xx answers before its own.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Set

from baseplate_events.collector.service.intake import Refused, check_batch

SIGNATURE = re.compile(r"^key=([^,\s]+), mac=([0-9a-f]{64})$")
MAX_BODY = 8 << 20


@dataclass
class Received:
    """One accepted batch."""

    body: bytes  # uncompressed
    events: List[Any]  # parsed JSON of each event, in order
    headers: Dict[str, str]
    client_port: int  # the publisher's end of the connection it came on


def split_events(version: str, document: Any) -> List[Any]:
    """The events of a parsed batch body; raises ValueError if the shape is wrong."""
    if version == "2":
        if not isinstance(document, dict) or list(document) != ["1"]:
            raise ValueError("v2 batch must be {\"1\": {\"lst\": [...]}}")
        inner = document["1"]
        if not isinstance(inner, dict) or list(inner) != ["lst"]:
            raise ValueError("v2 batch field 1 must be a list")
        lst = inner["lst"]
        if lst[:1] != ["rec"] or not isinstance(lst[1], int) or lst[1] != len(lst) - 2:
            raise ValueError(f"v2 list header is wrong: {lst[:2]!r} for {len(lst) - 2} events")
        return list(lst[2:])
    if not isinstance(document, list):
        raise ValueError(f"v{version} batch must be a JSON list")
    return document


def event_uuid(event: Any) -> Optional[str]:
    """The uuid of a v1/2j event (``uuid``) or of a TJSON v2 event (field 5)."""
    if isinstance(event, dict):
        if "uuid" in event:
            return str(event["uuid"])
        field = event.get("5")
        if isinstance(field, dict) and "str" in field:
            return str(field["str"])
    return None


class LocalCollector:
    """The collector; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(
        self, secret: bytes, key_name: str = "TestKey", version: str = "2", port: int = 0
    ) -> None:
        self.secret = secret
        self.key_name = key_name
        self.version = version
        self.received: List[Received] = []
        self.problems: List[str] = []
        self.requests = 0
        self.answers: List[int] = []
        self.lock = threading.Condition()
        # Scripted misbehaviour.
        self.fail_until = 0.0
        self.fail_status = 503
        self.fail_next = 0
        self.script: List[int] = []  # statuses for the next requests, in order
        self.retry_after: Optional[str] = None
        self.max_body: Optional[int] = None
        self.poison: Optional[Callable[[Any], bool]] = None
        self.poison_status = 422  # 500: a collector that fails on the event instead
        self.reset_next = 0
        self.delay = 0.0
        # Answer the next ``stall_next`` requests with ``stall_with``, again and
        # again, a quarter second apart, until the client hangs up (at most 60 s).
        self.stall_next = 0
        self.stall_with = b"HTTP/1.1 100 Continue\r\n\r\n"
        #: Raw answers (status line on) written in place of the next POSTs' own, which
        #: are then not stored: a load balancer, a proxy or a portal answering instead.
        self.raw_answers: List[bytes] = []
        #: Written before each answer of the collector's own (interim 1xx answers of a
        #: front end).
        self.interim = b""
        self.connections: Set[socket.socket] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.collector = self  # type: ignore[attr-defined]
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def hostname(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "LocalCollector":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "LocalCollector":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------

    def close_connections(self, timeout: float = 5.0) -> None:
        """Close every open connection, as a collector's keep-alive timeout would."""
        with self.lock:
            for connection in self.connections:
                connection.shutdown(socket.SHUT_RDWR)
            if not self.lock.wait_for(lambda: not self.connections, timeout):
                raise AssertionError("connections did not close")

    def fail_for(
        self, seconds: float, status: int = 503, retry_after: Optional[str] = None
    ) -> None:
        """Answer ``status`` to everything for ``seconds``."""
        self.fail_status = status
        self.retry_after = retry_after
        self.fail_until = time.monotonic() + seconds

    def fail_requests(
        self, count: int, status: int = 503, retry_after: Optional[str] = None
    ) -> None:
        """Answer ``status`` to the next ``count`` requests."""
        self.fail_status = status
        self.retry_after = retry_after
        self.fail_next = count

    def answer_next(self, *statuses: int) -> None:
        """Answer the next requests with ``statuses``, one each, in order."""
        with self.lock:
            self.script.extend(statuses)

    # -- results -----------------------------------------------------------------

    def events(self) -> List[Any]:
        with self.lock:
            return [event for batch in self.received for event in batch.events]

    def uuids(self) -> List[Optional[str]]:
        return [event_uuid(event) for event in self.events()]

    def wait_for_events(self, count: int, timeout: float = 10.0) -> List[Any]:
        """Block until at least ``count`` events arrived (or the timeout); return them all."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while sum(len(b.events) for b in self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.lock.wait(remaining)
        return self.events()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.requests < count and time.monotonic() < deadline:
                self.lock.wait(0.05)
            return self.requests

    # -- handling ----------------------------------------------------------------

    def check(self, handler: "_Handler", compressed: bytes) -> "tuple[int, str, Optional[bytes]]":
        """Strict checks; returns (status, reason, uncompressed body or None)."""
        h = handler.headers
        if handler.path != f"/v{self.version}":
            return 400, f"path is {handler.path}, expected /v{self.version}", None
        if h.get("Content-Type") != "application/json":
            return 400, f"Content-Type is {h.get('Content-Type')!r}", None
        if h.get("Content-Encoding") != "gzip":
            return 400, f"Content-Encoding is {h.get('Content-Encoding')!r}", None
        if not h.get("User-Agent"):
            return 400, "no User-Agent", None
        date = h.get("Date", "")
        if not date.endswith(" GMT"):
            return 400, f"Date is not a current GMT date: {date!r}", None
        if SIGNATURE.match(h.get("X-Signature", "")) is None:
            return 400, f"X-Signature malformed: {h.get('X-Signature')!r}", None
        try:
            _, body = check_batch(h, compressed, {self.key_name: self.secret}, time.time(),
                                  max_body=MAX_BODY)
        except Refused as refusal:  # 403: a wrong key or mac; anything else is the publisher's bug
            return (403 if refusal.status == 403 else 400), str(refusal), None
        return 200, "", body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        collector: LocalCollector = self.server.collector  # type: ignore[attr-defined]
        with collector.lock:
            collector.connections.add(self.connection)

    def finish(self) -> None:
        collector: LocalCollector = self.server.collector  # type: ignore[attr-defined]
        with collector.lock:
            collector.connections.discard(self.connection)
            collector.lock.notify_all()
        super().finish()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        collector: LocalCollector = self.server.collector  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", "0"))
        compressed = self.rfile.read(length)
        with collector.lock:
            collector.requests += 1
            collector.lock.notify_all()
            reset = collector.reset_next > 0
            if reset:
                collector.reset_next -= 1
            stall = collector.stall_with if collector.stall_next > 0 else None
            if stall is not None:
                collector.stall_next -= 1
            raw = collector.raw_answers.pop(0) if collector.raw_answers else None
            scripted = None
            if collector.script:
                scripted = collector.script.pop(0)
            elif collector.fail_next > 0:
                collector.fail_next -= 1
                scripted = collector.fail_status
            elif time.monotonic() < collector.fail_until:
                scripted = collector.fail_status
            delay = collector.delay
        if delay:
            time.sleep(delay)
        if reset:
            # An RST mid-request: the publisher must retry, not lose the batch.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if stall is not None:
            self._stall(stall)
            return
        if raw is not None:
            self.wfile.write(raw)
            return
        if scripted is not None:
            self._answer(collector, scripted, f"scripted {scripted}", collector.retry_after)
            return
        status, reason, body = collector.check(self, compressed)
        if body is None:
            if status == 400:
                collector.problems.append(reason)
            self._answer(collector, status, reason)
            return
        if collector.max_body is not None and len(body) > collector.max_body:
            self._answer(collector, 413, f"body is {len(body)} bytes; at most {collector.max_body}")
            return
        try:
            events = split_events(collector.version, json.loads(body))
        except ValueError as exc:
            collector.problems.append(f"bad batch: {exc}")
            self._answer(collector, 400, f"bad batch: {exc}")
            return
        if collector.poison is not None and any(collector.poison(e) for e in events):
            self._answer(collector, collector.poison_status, "poison event")
            return
        with collector.lock:
            collector.received.append(
                Received(body, events, dict(self.headers.items()), self.client_address[1])
            )
            collector.lock.notify_all()
        self._answer(collector, 200, "")

    def _stall(self, chunk: bytes) -> None:
        """Keep the client waiting for an answer that never completes."""
        self.close_connection = True
        stop = time.monotonic() + 60
        try:
            while time.monotonic() < stop:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass  # the client gave up: what the test wants

    def _answer(
        self, collector: LocalCollector, status: int, reason: str, retry_after: Optional[str] = None
    ) -> None:
        with collector.lock:
            collector.answers.append(status)
        payload = reason.encode()
        if collector.interim:
            self.wfile.write(collector.interim)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(payload)


def free_port() -> int:
    """A port nothing listens on (for a collector that is down, then comes up)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
