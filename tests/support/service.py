"""The collector run as a site runs it: ``python -m baseplate_events.collector`` in a subprocess.

:class:`CollectorProcess` starts it with the publisher's test key
(``TestKey``, :data:`~tests.support.publisher.SECRET`), reads its start line
(the URL, and the sink it names), and stops it with SIGTERM (or kills it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from tests.support.processes import LISTENING, REPO, reap
from tests.support.publisher import SECRET_B64

if TYPE_CHECKING:
    import requests

KEY = f"TestKey={SECRET_B64}"


class CollectorProcess:
    """``python -m baseplate_events.collector --port 0 --key TestKey=... *args``."""

    def __init__(self, *args: str, env: Optional[Dict[str, str]] = None,
                 umask: Optional[int] = None, log: Optional[Path] = None) -> None:
        self.args = ["--port", "0", "--key", KEY, *args]
        self.env = dict(os.environ, **(env or {}))
        self.umask = umask
        self.log = log
        self.process: Optional["subprocess.Popen[str]"] = None
        self.start_line = ""
        self.url = ""

    def run(self, timeout: float = 30.0) -> "subprocess.CompletedProcess[str]":
        """Run to completion (a collector that refuses to start): status and output."""
        return subprocess.run([sys.executable, "-m", "baseplate_events.collector", *self.args],
                              cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=self._preexec)

    def _preexec(self) -> None:
        if self.umask is not None:
            os.umask(self.umask)

    def start(self) -> "CollectorProcess":
        stderr = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "baseplate_events.collector", *self.args], cwd=REPO,
                env=self.env, stdout=subprocess.PIPE, stderr=stderr, text=True,
                preexec_fn=self._preexec)
        finally:
            if self.log is not None:
                stderr.close()  # type: ignore[union-attr]
        assert self.process.stdout is not None
        self.start_line = self.process.stdout.readline()
        if not self.start_line.startswith(LISTENING):
            self.kill()
            raise AssertionError(f"the collector did not start: {self.start_line!r}"
                                 + (f"\n{self.log.read_text()}" if self.log else ""))
        self.url = self.start_line.split()[3]
        return self

    @property
    def hostname(self) -> str:
        return self.url[len("http://"):]

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None:
            reap(self.process)

    def __enter__(self) -> "CollectorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def jsonl_uuids(directory: Path) -> List[str]:
    """The uuids of every event in the finished ``*.jsonl`` files of ``directory``."""
    import json

    found: List[str] = []
    for path in sorted(directory.glob("*.jsonl")):
        found.extend(json.loads(line)["uuid"] for line in path.read_text().splitlines())
    return found


def wait_for_lines(directory: Path, count: int, timeout: float = 15.0) -> None:
    """Wait until the files of ``directory`` (finished or not) hold ``count`` lines."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        lines = sum(path.read_bytes().count(b"\n") for path in directory.glob("*.jsonl*"))
        if lines >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{lines} of {count} lines in {directory}")
        time.sleep(0.05)


def v1_event(number: int) -> bytes:
    """A v1 event (``collector.version = 1``) with a fresh uuid."""
    import json
    import time
    import uuid

    return json.dumps({"event_topic": "service", "event_type": "test",
                       "event_ts": int(time.time() * 1000), "uuid": str(uuid.uuid4()),
                       "payload": {"n": number}}, separators=(",", ":")).encode()


def post_batch(url: str, events: "List[bytes]", timeout: float = 10.0,
               secret: "bytes | None" = None) -> "requests.Response":
    """POST ``events`` as a signed, gzipped v1 batch (key ``TestKey``)."""
    import email.utils
    import gzip

    import requests

    from baseplate_events.collector.service.intake import sign

    from tests.support.publisher import SECRET

    body = b"[" + b",".join(events) + b"]"
    return requests.post(url + "/v1", data=gzip.compress(body), timeout=timeout, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip",
        "Date": email.utils.formatdate(usegmt=True),
        "X-Signature": f"key=TestKey, mac={sign(secret or SECRET, body)}"})


def scrape(url: str) -> Dict[str, float]:
    """A /metrics page as ``{'name{label="v",...}': value}`` (labels sorted)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    values: Dict[str, float] = {}
    text = requests.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values
