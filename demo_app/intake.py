"""The collector's checks on one POSTed batch, in the order a strict collector makes them.

Kept apart from the HTTP plumbing (:mod:`demo_app.collector`) so that each
rule reads as one function. :func:`judge` takes the path, the headers and the
raw body and returns the status and the JSON answer; it never raises for bad
input.

Statuses, and why each:

- 401: ``X-Signature`` missing or not ``key=NAME, mac=HEX``, or ``Date``
  missing, unparseable or outside the replay window. A stale ``Date`` is an
  authentication failure, not bad content: the events are fine and a publisher
  should keep them and retry with a fresh, correct clock, which is what a 401
  tells it (a 400 would invite it to drop them).
- 403: a key name we do not hold, or a mac that does not match. The mac is
  HMAC-SHA256 over the *uncompressed* body, compared with
  :func:`hmac.compare_digest`.
- 404/405: another path or method. 411: no ``Content-Length`` (chunked bodies
  are refused, so the size is known before reading).
- 413: the body, compressed or decompressed, is over the cap (gzip bombs).
- 415: not ``Content-Encoding: gzip`` / ``Content-Type: application/json``.
- 400: not gzip, or not the batch format of the version in the path.
- 422: a well-formed batch with events we refuse; the answer names each one
  and nothing of the batch is stored.
"""
from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .batches import MalformedBatch, RefusedEvents, decode_batch
from .store import EventStore

#: Largest body, compressed or not, the collector reads by default (the
#: publisher's batches hold at most 500 KiB uncompressed).
DEFAULT_MAX_BODY = 1024 * 1024
#: How far, in seconds, a request's ``Date`` may be from the collector's clock.
DEFAULT_REPLAY_WINDOW = 300.0

PATHS = {"/v1": "1", "/v2": "2", "/v2j": "2j"}

_SIGNATURE = re.compile(r"^\s*key=([^\s,]+)\s*,\s*mac=([0-9A-Fa-f]+)\s*$")
Answer = Tuple[int, Dict[str, Any]]


@dataclass(frozen=True)
class IntakeConfig:
    """What the collector accepts: its keys (name → raw secret), the replay window, the cap."""

    keys: Mapping[str, bytes]
    replay_window: float = DEFAULT_REPLAY_WINDOW
    max_body: int = DEFAULT_MAX_BODY
    #: seconds since the epoch; tests pass a fake clock
    clock: Callable[[], float] = field(default=time.time)


class Refused(Exception):
    """A request the collector answers with ``status``; ``message`` goes in the body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra

    def answer(self) -> Answer:
        return self.status, {"error": str(self), **self.extra}


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body (one member or several) without producing more than ``limit`` bytes.

    :raises Refused: 413 once the output would pass ``limit``; 400 if the data
        is not complete, valid gzip.
    """
    out = bytearray()
    remaining = data
    if not remaining:
        raise Refused(400, "body is empty; expected a gzip stream")
    while remaining:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = remaining
        try:
            while chunk and not inflater.eof:
                # max_length bounds the work: a bomb stops at limit + 1 bytes.
                out += inflater.decompress(chunk, limit + 1 - len(out))
                if len(out) > limit:
                    raise Refused(413, f"decompressed body is over {limit} bytes")
                chunk = inflater.unconsumed_tail
        except zlib.error as exc:
            raise Refused(400, f"body is not valid gzip: {exc}") from None
        if not inflater.eof:
            raise Refused(400, "body is not valid gzip: the stream is truncated")
        remaining = inflater.unused_data
    return bytes(out)


def parse_signature(header: Optional[str]) -> Tuple[str, str]:
    """Split ``key=NAME, mac=HEX`` into the name and the lower-case hex mac.

    :raises Refused: 401 when the header is missing or malformed.
    """
    if header is None:
        raise Refused(401, "missing X-Signature header")
    match = _SIGNATURE.match(header)
    if match is None or len(match.group(2)) != 64:
        raise Refused(401, "malformed X-Signature header; expected 'key=NAME, mac=<64 hex digits>'")
    return match.group(1), match.group(2).lower()


def check_date(header: Optional[str], now: float, window: float) -> None:
    """Refuse (401) a ``Date`` that is missing, unparseable, or more than ``window`` s off."""
    if header is None:
        raise Refused(401, "missing Date header")
    try:
        parsed = email.utils.parsedate_to_datetime(header)
        if parsed.tzinfo is None:  # "-0000": UTC with no zone information
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        sent = parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        raise Refused(401, f"unparseable Date header {header[:64]!r}; expected RFC 1123") from None
    skew = now - sent
    if abs(skew) > window:
        raise Refused(
            401,
            f"Date is {abs(skew):.0f} s {'behind' if skew > 0 else 'ahead of'} the collector's "
            f"clock; the replay window is {window:.0f} s",
        )


def sign(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret``, as the publisher computes it."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_mac(keys: Mapping[str, bytes], key_name: str, mac: str, body: bytes) -> None:
    """Refuse (403) an unknown key or a wrong mac, comparing in constant time."""
    secret = keys.get(key_name)
    # An unknown key still costs one HMAC, so timing says little about key names.
    expected = sign(secret if secret is not None else b"\0" * 32, body)
    matches = hmac.compare_digest(expected, mac)
    if secret is None:
        raise Refused(403, f"unknown key {key_name[:64]!r}")
    if not matches:
        raise Refused(403, f"signature mismatch for key {key_name!r}")


def read_length(headers: Mapping[str, str], max_body: int) -> int:
    """The ``Content-Length`` to read.

    :raises Refused: 411 without a usable length; 413 over ``max_body`` (its
        ``extra["length"]`` is the declared length, for the server to drain).
    """
    if headers.get("Transfer-Encoding") is not None:
        raise Refused(411, "chunked bodies are not accepted; send Content-Length")
    raw = headers.get("Content-Length")
    if raw is None or not raw.strip().isdigit():
        raise Refused(411, "missing or invalid Content-Length")
    length = int(raw)
    if length > max_body:
        raise Refused(
            413, f"body is {length} bytes; the collector takes at most {max_body}", length=length
        )
    return length


def judge(
    config: IntakeConfig, store: EventStore, path: str, headers: Mapping[str, str], body: bytes
) -> Answer:
    """Check one POSTed batch and store it if acceptable; return the status and JSON answer.

    ``headers`` are keyed by Title-Case name (``X-Signature``, ``Content-Length``).
    """
    try:
        return _judge(config, store, path, headers, body)
    except Refused as refusal:
        return refusal.answer()


def _judge(
    config: IntakeConfig, store: EventStore, path: str, headers: Mapping[str, str], body: bytes
) -> Answer:
    version = PATHS.get(path)
    if version is None:
        raise Refused(404, f"no such endpoint {path[:64]!r}; POST to /v1, /v2 or /v2j")
    key_name, mac = parse_signature(headers.get("X-Signature"))
    check_date(headers.get("Date"), config.clock(), config.replay_window)
    if key_name not in config.keys:
        check_mac(config.keys, key_name, mac, b"")  # raises 403 after the same HMAC work
    encoding = (headers.get("Content-Encoding") or "").strip().lower()
    if encoding != "gzip":
        raise Refused(415, f"Content-Encoding must be gzip, got {encoding or 'none'!r}")
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Refused(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
    plain = gunzip_bounded(body, config.max_body)
    check_mac(config.keys, key_name, mac, plain)
    try:
        events = decode_batch(version, plain)
    except MalformedBatch as exc:
        raise Refused(400, f"not a v{version} batch: {exc}") from None
    except RefusedEvents as exc:
        raise Refused(
            422, str(exc), refused=[refusal.as_dict() for refusal in exc.refusals]
        ) from None
    result = store.add(events, received_ms=int(config.clock() * 1000))
    return 200, {"accepted": result.accepted, "duplicates": result.duplicates}
