"""Test subprocesses: collector commands (started, URL read, stopped with SIGTERM), a
signed POST to them, and reaping whatever a failed test left running."""
from __future__ import annotations

import email.utils
import gzip
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from baseplate_events.collector.service.intake import sign

REPO = str(Path(__file__).resolve().parent.parent.parent)
LISTENING = "collector listening on http://127.0.0.1:"


@contextmanager
def serving_collector(module: str, *args: str) -> Iterator[str]:
    """``python -m module args`` until it says where it listens; yields that URL.

    On leaving, SIGTERM must end it with status 0; if the test failed first, it is killed.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(LISTENING), line
        yield line.split()[3]
        process.send_signal(signal.SIGTERM)
        assert 0 == process.wait(timeout=10)
    finally:
        reap(process)


def reap(*processes: "subprocess.Popen[str] | subprocess.Popen[bytes]") -> None:
    """Kill and wait for each of ``processes`` still running: a test's cleanup if it failed."""
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def signed_post(url: str, path: str, body: bytes, secret: bytes) -> requests.Response:
    """POST ``body`` gzipped to ``url + path``, dated now and signed with key ``demo``."""
    return requests.post(url + path, data=gzip.compress(body), timeout=10, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(usegmt=True),
        "X-Signature": f"key=demo, mac={sign(secret, body)}"})
