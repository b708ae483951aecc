"""What a demo run sets up before it starts anything: queue sizes, queues, publisher config.

Shared with the end-to-end tests, which build the same pipeline in-process.
"""
from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Sequence, Tuple

from baseplate_events.errors import QueueLimitError
from baseplate_events.mqueue.posix import MessageQueue, kernel_limits

#: The kernel's stock limits: fs.mqueue.msg_max, fs.mqueue.msgsize_max, ulimit -q.
STOCK_MSG_MAX, STOCK_MSGSIZE_MAX, STOCK_ULIMIT_Q = 10, 8192, 819200


def queue_sizes() -> Tuple[int, int, str]:
    """Queue sizes that fit both the stock limits and this machine's, and a line saying so."""
    limits = kernel_limits()
    messages = min(STOCK_MSG_MAX, limits["msg_max"] or STOCK_MSG_MAX)
    size = min(STOCK_MSGSIZE_MAX, limits["msgsize_max"] or STOCK_MSGSIZE_MAX)
    ulimit = limits["ulimit_q"]
    ulimit_text = "unlimited" if ulimit in (-1, None) or ulimit >= 2**62 else f"{ulimit} bytes"
    line = (
        f"queues sized {messages} messages x {size} bytes, to fit the kernel's stock limits "
        f"(fs.mqueue.msg_max={STOCK_MSG_MAX}, fs.mqueue.msgsize_max={STOCK_MSGSIZE_MAX}, "
        f"ulimit -q {STOCK_ULIMIT_Q} bytes per user) without root or a sysctl; this machine: "
        f"msg_max={limits['msg_max']}, msgsize_max={limits['msgsize_max']}, ulimit -q {ulimit_text}"
    )
    return messages, size, line


def open_queue(name: str, messages: int, size: int, attempts: int = 10) -> MessageQueue:
    """Create the queue, retrying while the user's ``ulimit -q`` budget is spent elsewhere.

    Other processes of the same user (a test run, say) may briefly hold the
    budget; their queues go away when they finish.
    """
    for attempt in range(attempts):
        try:
            return MessageQueue("/events-" + name, messages, size)
        except QueueLimitError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + 0.25 * attempt)
    raise AssertionError("unreachable")


def publisher_config(
    queues: Sequence[Tuple[str, str]],
    collector_url: str,
    key_name: str,
    secret: bytes,
    messages: int,
    size: int,
    workdir: Path,
    batch_wait: float = 0.25,
) -> str:
    """An INI file with one ``[event-publisher:<queue>]`` section per (queue, version).

    Besides the seed's keys: plain HTTP to the local collector, the queue's
    sizes, a short batch wait (the demo wants low latency more than big
    batches), short retry backoffs (so that the demo recovers from ``--outage``
    within a second of the collector's return) and the spool inside the run's
    directory, so nothing outlives it.
    """
    hostname = collector_url.split("://", 1)[1]
    sections = []
    for queue, version in queues:
        sections.append(
            f"[event-publisher:{queue}]\n"
            f"collector.hostname = {hostname}\n"
            "collector.scheme = http\n"
            f"collector.version = {version}\n"
            f"key.name = {key_name}\n"
            f"key.secret = {base64.b64encode(secret).decode()}\n"
            f"max_queue_size = {messages}\n"
            f"max_event_size = {size}\n"
            f"batch.max_wait = {batch_wait}\n"
            "retry.backoff_initial = 0.2\n"
            "retry.backoff_max = 1\n"
            f"spool.path = {workdir / ('spool-' + queue)}\n"
        )
    return "\n".join(sections)
