"""An operator's tool for event queues: look inside, drain, refill, create, remove.

    python -m baseplate_events.queue_tool v2 --stats
    python -m baseplate_events.queue_tool v2 --read [--limit N]
    printf '%s\\n' '{"a": 1}' | python -m baseplate_events.queue_tool v2 --write
    python -m baseplate_events.queue_tool v2 --create --max-messages 10 --max-message-size 8192
    python -m baseplate_events.queue_tool v2 --unlink

``NAME`` is an event queue name (``v2`` means ``/events-v2``) or, with a
leading slash, any POSIX queue name. Exit status: 0 on success, 1 when the
queue is missing or an operation fails, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, TextIO

from ..errors import EventError, EventTooLargeError, MessageQueueError, TimedOutError
from .posix import DEFAULT_MODE, MessageQueue

# What --create asks for unless told otherwise: the most a stock kernel allows
# an unprivileged user (fs.mqueue.msg_max=10, fs.mqueue.msgsize_max=8192).
DEFAULT_CREATE_MESSAGES = 10
DEFAULT_CREATE_MESSAGE_SIZE = 8192


def full_name(name: str) -> str:
    """``v2`` → ``/events-v2``; a name with a leading slash is taken as it is."""
    return name if name.startswith("/") else "/events-" + name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m baseplate_events.queue_tool",
        description="Inspect and operate on a POSIX event queue.",
    )
    parser.add_argument("name", help="event queue name (v2 → /events-v2) or /full-name")
    actions = parser.add_mutually_exclusive_group(required=True)
    actions.add_argument("--stats", action="store_true", help="print depth, capacity, message size")
    actions.add_argument("--read", action="store_true", help="print and consume messages")
    actions.add_argument("--write", action="store_true", help="queue each line of stdin")
    actions.add_argument("--create", action="store_true", help="create the queue if missing")
    actions.add_argument("--unlink", action="store_true", help="remove the queue")
    parser.add_argument("--limit", type=int, default=None, help="with --read: at most N messages")
    parser.add_argument(
        "--wait", type=float, default=0.0, help="with --read: seconds to wait for more (0)"
    )
    parser.add_argument("--max-messages", type=int, default=DEFAULT_CREATE_MESSAGES)
    parser.add_argument("--max-message-size", type=int, default=DEFAULT_CREATE_MESSAGE_SIZE)
    parser.add_argument(
        "--mode", type=lambda text: int(text, 8), default=DEFAULT_MODE, help="octal, e.g. 0600"
    )
    return parser


def _open_existing(name: str) -> MessageQueue:
    # Sizes are ignored by the kernel when the queue exists, which create=False requires.
    return MessageQueue(name, 1, 1, create=False, check_access=False)


def main(
    argv: Optional[List[str]] = None,
    stdin: Optional[TextIO] = None,
    stdout: Optional[TextIO] = None,
) -> int:
    """Run the tool; returns the exit status.

    :param argv: the arguments (default: ``sys.argv[1:]``), e.g.
        ``["v2", "--stats"]``.
    :param stdin: where ``--write`` reads lines (default: ``sys.stdin``).
    :param stdout: where output goes (default: ``sys.stdout``); errors go to
        ``sys.stderr``.
    :returns: 0 on success, 1 when the queue is missing or an operation
        fails; bad usage exits with 2 (argparse).
    """
    args = _parser().parse_args(argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    name = full_name(args.name)
    try:
        if args.create:
            with MessageQueue(
                name, args.max_messages, args.max_message_size, mode=args.mode
            ) as queue:
                print(
                    f"{name}: max_messages={queue.max_messages} "
                    f"max_message_size={queue.max_message_size}",
                    file=stdout,
                )
            return 0
        with _open_existing(name) as queue:
            if args.stats:
                print(
                    f"{name}: depth={queue.depth} max_messages={queue.max_messages} "
                    f"max_message_size={queue.max_message_size}",
                    file=stdout,
                )
            elif args.read:
                _read(queue, args.limit, args.wait, stdout)
            elif args.write:
                return _write(queue, stdin, stdout)
            elif args.unlink:
                queue.unlink()
                print(f"{name}: unlinked", file=stdout)
        return 0
    except EventError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _read(queue: MessageQueue, limit: Optional[int], wait: float, stdout: TextIO) -> None:
    count = 0
    while limit is None or count < limit:
        try:
            message = queue.get(timeout=wait)
        except TimedOutError:
            break
        stdout.write(message.decode("utf-8", errors="backslashreplace") + "\n")
        count += 1
    stdout.flush()
    print(f"read {count} message(s)", file=sys.stderr)


def _write(queue: MessageQueue, stdin: TextIO, stdout: TextIO) -> int:
    count = 0
    for line_number, line in enumerate(stdin, start=1):
        message = line.rstrip("\n").encode("utf-8")
        if not message:
            continue
        try:
            queue.put(message, timeout=0)
        except TimedOutError:
            print(
                f"error: line {line_number}: the queue is full "
                f"({queue.max_messages} messages); {count} written",
                file=sys.stderr,
            )
            return 1
        except EventTooLargeError as exc:
            print(f"error: line {line_number}: {exc}; {count} written", file=sys.stderr)
            return 1
        count += 1
    print(f"wrote {count} message(s)", file=stdout)
    return 0


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()


__all__ = ["MessageQueueError", "full_name", "main"]
