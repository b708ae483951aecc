"""The JSONL sink's line format: one event per line, written and read back.

``{"uuid":...,"stream":...,"received_ms":...,"event":EVENT}`` where EVENT is
the event's JSON exactly as received; ``baseplate-events-tail`` reads the
lines back with :func:`read_line`.
"""
from __future__ import annotations

import msgspec

from . import STREAMS, StoredEvent

__all__ = ["Line", "read_line", "write_line"]


def write_line(stream: str, event: StoredEvent) -> bytes:
    """One line of the file: the uuid, the stream, when it came and the event as received."""
    # JSON strings cannot hold a raw newline, so one in the event is whitespace.
    raw = event.raw.replace(b"\n", b" ").replace(b"\r", b" ")
    return b'{"uuid":"%s","stream":"%s","received_ms":%d,"event":%s}\n' % (
        event.uuid.encode("ascii"), stream.encode("ascii"), event.received_ms, raw)



class Line(msgspec.Struct, frozen=True):
    """One line of a JSONL file, as :func:`write_line` writes it; ``event`` is left as its bytes."""

    uuid: str
    stream: str
    received_ms: int
    #: the event's JSON exactly as received (``bytes(line.event)``)
    event: msgspec.Raw


_read_line = msgspec.json.Decoder(Line).decode


def read_line(line: bytes) -> Line:
    """Unpack one line of a JSONL file (what the JSONL sink wrote).

    :raises ValueError: the line is not one of ours (not JSON, a key missing or
        of the wrong type, an unknown stream); the message says what is wrong.
    """
    try:
        parsed = _read_line(line)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a line of the jsonl sink: {exc}") from None
    if parsed.stream not in STREAMS:
        raise ValueError(f"not a line of the jsonl sink: unknown stream {parsed.stream!r}")
    return parsed
