"""``python -m benchmarks.hostile [SECONDS] [NAME...]``: the publisher against hostile answers.

Each scenario starts the publisher of the working directory (``python -m
publisher``, default backoff) against a local server that answers every POST
with the same raw bytes: an HTML page, ``{"accepted": 0}``, 201, 206, a 301
or 307 redirect, interim 103 (or 102 and 103) answers before a 200. Twenty
events are put on its queue; after SECONDS (default 20) it is stopped, and
one line says what happened: POSTs received, tracebacks and bytes in the
publisher's log, events acknowledged (the health file's ``sent``), events
left in the spool, and warning or error lines. Run it from two trees to
compare them.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Tuple

from baseplate_events.mqueue.posix import MessageQueue

EVENTS = 20


def _answer(status_line: str, headers: List[Tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (f"HTTP/1.1 {status_line}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body


SCENARIOS: Dict[str, bytes] = {
    "1-html": _answer("200 OK", [("Content-Type", "text/html")],
                      b"<html><body>Sign in to the Wi-Fi</body></html>"),
    "1-accepted0": _answer("200 OK", [("Content-Type", "application/json")],
                           b'{"accepted": 0}'),
    "1-201": _answer("201 Created", [], b""),
    "1-206": _answer("206 Partial Content", [], b""),
    "2-301": _answer("301 Moved Permanently",
                     [("Location", "https://collector.example/v2j")], b"x" * 300),
    "2-307": _answer("307 Temporary Redirect",
                     [("Location", "https://collector.example/v2j")], b""),
    "3-103": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    + _answer("204 No Content", [], b""),
    "3-102x2": b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n"
    + _answer("200 OK", [], b""),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server: Any = self.server
        server.posts += 1
        self.connection.sendall(server.raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def _event(number: int) -> bytes:
    return json.dumps({"uuid": f"00000000-0000-4000-8000-{number:012d}", "n": number,
                       "pad": "x" * 80}).encode()


def run(name: str, raw: bytes, seconds: float) -> str:
    """One scenario; its result line."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.raw, server.posts = raw, 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    queue_name = f"hostile{os.getpid()}{name.replace('-', '')}"
    config = tmp / "publisher.ini"
    config.write_text("\n".join([
        f"[event-publisher:{queue_name}]",
        f"collector.hostname = 127.0.0.1:{server.server_address[1]}",
        "collector.scheme = http", "collector.version = 2j", "collector.timeout = 1",
        "key.name = Bench", "key.secret = YmVuY2ggc2VjcmV0",
        "max_queue_size = 10", "max_event_size = 2048", "batch.max_wait = 0.05",
        "shutdown.deadline = 0.5", f"spool.path = {tmp / 'spool'}", "spool.fsync = never",
        "health.interval = 0.2", "health.log_interval = 0", "",
    ]))
    config.chmod(0o600)  # an inline key.secret others can read would add a warning
    queue = MessageQueue("/events-" + queue_name, 10, 2048)
    log = tmp / "publisher.log"
    try:
        with open(log, "wb") as stderr:
            publisher = subprocess.Popen(
                [sys.executable, "-m", "publisher", "--queue-name", queue_name, str(config)],
                stderr=stderr)
        time.sleep(1.0)
        for number in range(EVENTS):
            queue.put(_event(number), timeout=5)
        time.sleep(seconds)
        publisher.send_signal(signal.SIGTERM)
        publisher.wait(30)
        text = log.read_text(errors="replace")
        health = json.loads((tmp / "spool" / "health.json").read_text())
    finally:
        queue.close()
        queue.unlink()
        server.shutdown()
    lines = text.splitlines()
    result = (
        f"{name:12s} POSTs={server.posts:4d} tracebacks={text.count('Traceback'):3d} "
        f"log_bytes={len(text.encode()):6d} "
        f"acknowledged={health['counters'].get('sent', 0):3d} "
        f"left_in_spool={health['spool_events']:3d} "
        f"warning_or_error_lines={sum(' WARNING ' in x or ' ERROR ' in x for x in lines)}"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: List[str]) -> None:
    seconds = float(argv[0]) if argv else 20.0
    for name, raw in SCENARIOS.items():
        if len(argv) < 2 or name in argv[1:]:
            print(run(name, raw, seconds), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
