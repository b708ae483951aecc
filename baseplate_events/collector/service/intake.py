"""The collector's checks on one POSTed batch, before anything is decoded.

Each rule is one function raising :class:`Refused`, which carries the HTTP
status and the message for the answer; :func:`check_batch` makes them all in
the order a strict collector makes them. This is the one intake: the WSGI app
(:mod:`baseplate_events.collector.service.handler`), the tests' scriptable collector
(``tests/support/collector.py``) and the benchmark's counting collector
(``benchmarks/collector.py``, which makes only :func:`check_headers`, to stay
cheap) all check requests here.

Statuses, and why each:

- 401: ``X-Signature`` missing or not ``key=NAME, mac=HEX``, or ``Date``
  missing, unparseable or outside the replay window. A stale ``Date`` is an
  authentication failure, not bad content: the events are fine and a publisher
  should keep them and retry with a fresh, correct clock, which is what a 401
  tells it (a 400 would invite it to drop them).
- 403: a key name we do not hold, or a mac that does not match: one answer for
  both, after the same HMAC work, so that key names cannot be enumerated. The
  mac is HMAC-SHA256 over the *uncompressed* body, compared with
  :func:`hmac.compare_digest`.
- 400: a malformed ``Content-Length``; a body that is not gzip, or gzip of
  more than :data:`MAX_GZIP_MEMBERS` members or with an empty member (both
  publishers send one member; the bound keeps the work done before the
  signature is checked proportional to the body).
- 411: neither ``Content-Length`` nor a chunked body.
- 413: the body, compressed or decompressed, is over the cap (gzip bombs).
- 415: not ``Content-Encoding: gzip`` / ``Content-Type: application/json``.
"""
from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
import re
import zlib
from types import ModuleType
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_REPLAY_WINDOW",
    "MAX_GZIP_MEMBERS",
    "Refused",
    "check_batch",
    "check_date",
    "check_encoding",
    "check_headers",
    "check_mac",
    "declared_length",
    "gunzip_bounded",
    "parse_signature",
    "sign",
]

#: Largest body, compressed or not, the collector reads by default (the
#: publisher's batches hold at most 500 KiB uncompressed).
DEFAULT_MAX_BODY = 1024 * 1024
#: The most gzip members a body may hold (the publishers send one).
MAX_GZIP_MEMBERS = 16
#: How far, in seconds, a request's ``Date`` may be from the collector's clock.
DEFAULT_REPLAY_WINDOW = 300.0
#: The one answer to an unknown key and to a wrong mac.
SIGNATURE_REFUSED = "signature does not match a key this collector holds"

_inflate: ModuleType
try:
    from isal import isal_zlib as _inflate
except ImportError:  # the core install: the standard library's zlib
    _inflate = zlib

_SIGNATURE = re.compile(r"^\s*key=([^\s,]+)\s*,\s*mac=([0-9A-Fa-f]+)\s*$")
_DIGITS = re.compile(r"[0-9]+")
#: a secret no key has (its HMAC is computed for an unknown key, so that the
#: answer costs the same time as for a wrong mac)
_NO_SECRET = b"\0" * 32


class Headers(Protocol):
    """A request's headers by name: a dict, or ``http.server``'s (case-insensitive)."""

    def get(self, name: str) -> Optional[str]: ...


class Refused(Exception):
    """A request the collector answers with ``status``; the message goes in the body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra

    def answer(self) -> Tuple[int, Dict[str, Any]]:
        return self.status, {"error": str(self), **self.extra}


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body (one member or several) without producing more than ``limit`` bytes.

    Inflated by ISA-L (``isal``, the collector extra; at about a third of
    zlib's CPU) where it is installed, else by ``zlib``: the same
    streaming interface, so the bound and the member checks are the same.

    :raises Refused: 413 once the output would pass ``limit``; 400 if the data
        is not complete, valid gzip, holds more than :data:`MAX_GZIP_MEMBERS`
        members, or a member holding nothing.
    """
    parts = []
    produced = 0
    remaining = data
    members = 0
    if not remaining:
        raise Refused(400, "body is empty; expected a gzip stream")
    while remaining:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise Refused(400, f"body holds more than {MAX_GZIP_MEMBERS} gzip members; "
                               f"send the batch as one gzip stream")
        inflater = _inflate.decompressobj(16 + _inflate.MAX_WBITS)
        chunk = remaining
        before = produced
        try:
            while chunk and not inflater.eof:
                # max_length bounds the work: a bomb stops at limit + 1 bytes.
                part = inflater.decompress(chunk, limit + 1 - produced)
                produced += len(part)
                if produced > limit:
                    raise Refused(413, f"decompressed body is over {limit} bytes")
                parts.append(part)
                chunk = inflater.unconsumed_tail
        except _inflate.error as exc:
            raise Refused(400, f"body is not valid gzip: {exc}") from None
        if not inflater.eof:
            raise Refused(400, "body is not valid gzip: the stream is truncated")
        if produced == before:
            raise Refused(400, f"gzip member {members} of the body is empty; send the batch "
                               f"as one gzip stream")
        remaining = inflater.unused_data
    return parts[0] if len(parts) == 1 else b"".join(parts)


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
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        raise Refused(401, f"unparseable Date header {header[:64]!r}; expected RFC 1123") from None
    skew = now - sent
    if abs(skew) > window:
        raise Refused(
            401,
            f"Date is {abs(skew):.0f} s {'behind' if skew > 0 else 'ahead of'} the collector's "
            f"clock; the replay window is {window:.0f} s",
        )


def check_encoding(content_encoding: Optional[str], content_type: Optional[str]) -> None:
    """Refuse (415) anything but a gzipped JSON body, which is all the publisher sends."""
    encoding = (content_encoding or "").strip().lower()
    if encoding != "gzip":
        raise Refused(415, f"Content-Encoding must be gzip, got {encoding or 'none'!r}")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Refused(415, f"Content-Type must be application/json, got {kind or 'none'!r}")


def sign(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret``, as the publisher computes it."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_mac(keys: Mapping[str, bytes], key_name: str, mac: str, body: bytes) -> None:
    """Refuse (403) an unknown key or a wrong mac, with one answer and the same work for both."""
    secret = keys.get(key_name)
    matches = hmac.compare_digest(sign(_NO_SECRET if secret is None else secret, body), mac)
    if secret is None or not matches:
        raise Refused(403, SIGNATURE_REFUSED)


def declared_length(content_length: Optional[str], chunked: bool, max_body: int) -> Optional[int]:
    """The body size the request declares, or None for a chunked body (read up to the cap).

    :raises Refused: 400 for a malformed ``Content-Length``; 411 with neither a
        length nor chunked encoding; 413 over ``max_body`` (its
        ``extra["length"]`` is the declared length, for the server to drain).
    """
    if content_length is None or content_length == "":
        if chunked:
            return None
        raise Refused(411, "missing Content-Length")
    text = content_length.strip()
    if not _DIGITS.fullmatch(text):
        raise Refused(400, f"malformed Content-Length {content_length[:32]!r}; expected digits")
    length = int(text)
    if length > max_body:
        raise Refused(
            413, f"body is {length} bytes; the collector takes at most {max_body}", length=length
        )
    return length


def check_headers(headers: Headers, now: float, window: float = DEFAULT_REPLAY_WINDOW
                  ) -> Tuple[str, str]:
    """The checks that need no body: signature form, ``Date``, encodings; (key name, mac).

    :raises Refused: 401 (signature header, ``Date``) or 415 (encodings).
    """
    key_name, mac = parse_signature(headers.get("X-Signature"))
    check_date(headers.get("Date"), now, window)
    check_encoding(headers.get("Content-Encoding"), headers.get("Content-Type"))
    return key_name, mac


def check_batch(headers: Headers, body: bytes, keys: Mapping[str, bytes], now: float,
                window: float = DEFAULT_REPLAY_WINDOW, max_body: int = DEFAULT_MAX_BODY
                ) -> Tuple[str, bytes]:
    """Every check on one signed, gzipped batch; (key name, uncompressed body).

    :param keys: secret by key name.
    :param now: the collector's clock, seconds since the epoch.
    :raises Refused: as the module docstring says, the first check failed.
    """
    key_name, mac = check_headers(headers, now, window)
    plain = gunzip_bounded(body, max_body)
    check_mac(keys, key_name, mac, plain)
    return key_name, plain
