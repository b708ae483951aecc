"""Keeps an event queue full: ``python -m benchmarks.producer /events-NAME [POOL]``.

Stock kernels allow 10 messages per queue, far fewer than a benchmark needs,
so this process refills the queue while the publisher drains it. It sends
a pool of POOL distinct pre-serialized ~500-byte events (default 2000; 1 sends
one event over and over) with blocking ``mq_send`` (the kernel wakes it when
there is room) until it is killed. It prints ``ready`` once its pool is built
and starts sending when it reads a line on stdin, so that its start-up is not
timed.
"""
from __future__ import annotations

import signal
import sys

import posix_ipc

from .sample import event_pool


def main(argv: "list[str]") -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pool = event_pool(int(argv[1]) if len(argv) > 1 else 2000)
    queue = posix_ipc.MessageQueue(argv[0])
    send = queue.send
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    try:
        while True:
            for message in pool:
                try:
                    send(message)
                except posix_ipc.SignalError:
                    return 0
    finally:
        queue.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
