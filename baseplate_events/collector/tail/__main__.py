"""``baseplate-events-tail`` (``python -m baseplate_events.collector.tail``): what arrived?

Give it the collector's own flags; it reads what that collector stored::

    baseplate-events-tail --sink jsonl --option jsonl.directory=/var/lib/events
    baseplate-events-tail --sink sqlite --option sqlite.path=events.sqlite3 --from-beginning
    baseplate-events-tail --sink kafka --option kafka.bootstrap_servers=kafka-1:9092 \\
        --schema shop.ttypes:Event --follow

Exit status: 0; 1 when the sink cannot be read, or some stored record could
not be read as an event (each is named on stderr, the rest printed); 2 for a
bad flag or setting.
"""
from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from types import FrameType
from typing import IO, Optional, Sequence, Union

from ...errors import ConfigError
from ..__main__ import (
    add_schema_arguments,
    add_serving_arguments,
    add_sink_arguments,
    settings_from_args,
    sink_settings_from_args,
)
from ..decode.documents import StructShape
from ..decode.schema import SchemaError, load_schema
from ..service.settings import parse_settings
from . import CAUGHT_UP, Reader, TailRequest, UnreadableSink
from .output import JSONWriter, TableWriter

__all__ = ["console_main", "main", "make_reader"]

_PROG = "baseplate-events-tail"
_EPILOG = """\
Each event is one JSON object per line: uuid, stream (v1, v2, v2j), received_ms,
where it was read (kafka: topic, partition, offset; jsonl: file, line and
"pending": true for a line of a .part file; sqlite: row, receipts) and its
fields (by name with --schema, by id without). Kafka is read by assign, with no
consumer group and no offset committed; kafka.producer.security.*, sasl.* and
ssl.* options are used by its consumer too. The JSONL reader runs as the
collector's user or in its group (jsonl.mode).
"""


def _count(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Print what a collector stored, from any sink, like tail.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sink_arguments(parser, verb="were stored")
    add_schema_arguments(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("-n", "--last", type=_count, default=10, metavar="N",
                       help="print the last N events (default 10); for Kafka, the last N of "
                            "each partition")
    which.add_argument("--from-beginning", action="store_true",
                       help="print every event stored")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="then keep printing events as they are stored (until Ctrl-C)")
    parser.add_argument("--limit", type=_count, metavar="N", help="stop after N events")
    parser.add_argument("--format", choices=("json", "table"), default="json",
                        help="json: one object per line (default); table: aligned, newest last")
    parser.add_argument("--idle", type=_seconds, default=1.0, metavar="SECONDS",
                        help="kafka: once every partition is read to its high watermark of "
                             "the start, wait this long without a message (default 1)")
    parser.add_argument("--pending", action="store_true",
                        help="jsonl: also the whole lines of .part files (always with "
                             "--follow), marked \"pending\": true")
    parser.add_argument("--merge", action="store_true",
                        help="jsonl: order the events of all files by received time")
    ignored = parser.add_argument_group(
        "the collector's serving flags", "accepted, so that a collector's command line works "
        "here too, and not used (no key is needed to read)")
    add_serving_arguments(ignored)
    return parser


def make_reader(sink: str, options: "dict[str, str]") -> Reader:
    """The reader of sink ``sink`` from its options (prefix stripped).

    :raises ConfigError: an option is missing or invalid.
    """
    if sink == "kafka":
        from .kafka import KafkaReader

        return KafkaReader.from_options(options)
    if sink == "jsonl":
        from .files import JSONLReader

        return JSONLReader.from_options(options)
    from .sqlite import SQLiteReader

    return SQLiteReader.from_options(options)


def main(argv: Optional[Sequence[str]] = None, out: Optional[IO[bytes]] = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.sink != "jsonl":
        for flag in ("merge", "pending"):
            if getattr(args, flag):
                parser.error(f"--{flag}: only for --sink jsonl")
    raw = settings_from_args(args)
    raw.update(sink_settings_from_args(args, parser))
    try:
        settings = parse_settings(raw, keys_needed=False)
        schema: Optional[StructShape] = load_schema(settings.schema) if settings.schema else None
        reader = make_reader(settings.sink, dict(settings.sink_options))
    except (ConfigError, SchemaError) as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format=f"{_PROG}: %(message)s", stream=sys.stderr)
    librdkafka = logging.getLogger("baseplate_events.collector.tail.kafka.librdkafka")
    librdkafka.setLevel(logging.WARNING)
    librdkafka.addFilter(_Once())
    request = TailRequest(last=None if args.from_beginning else args.last, follow=args.follow,
                          idle=args.idle, pending=args.pending, merge=args.merge)
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    writer: Union[JSONWriter, TableWriter] = (
        TableWriter if args.format == "table" else JSONWriter)(out or sys.stdout.buffer, schema)
    try:
        return _run(reader, request, writer, args.limit, stop)
    except UnreadableSink as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of our output left (| head): nothing more to say
        _silence_stdout()
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Once(logging.Filter):
    """Lets each of librdkafka's lines through once: it repeats a refused connection at
    every retry, a few times a second."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = re.sub(r"\d+", "N", record.getMessage())
        if text in self._seen:
            return False
        self._seen.add(text)
        return True


def _run(reader: Reader, request: TailRequest, writer: Union[JSONWriter, TableWriter],
         limit: Optional[int], stop: threading.Event) -> int:
    printed = 0
    events = reader.events(request, stop)
    try:
        for event in events:
            if event is CAUGHT_UP:
                writer.flush()
                continue
            writer.write(event)
            printed += 1
            if printed == limit or stop.is_set():
                break
    finally:
        events.close()  # a Kafka consumer is closed now, not when collected
    writer.flush()
    return 1 if reader.problems else 0


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
