"""One POST of one batch: gzip, sign, send (over :mod:`publisher.transport`), classify the answer.

The wire format is baseplate.py's: ``POST {scheme}://{hostname}/v{version}``
with ``Date``, ``User-Agent``, ``Content-Type: application/json``,
``Content-Encoding: gzip`` and ``X-Signature: key=NAME, mac=HEX`` where the
MAC is HMAC-SHA256 of the *uncompressed* body. What to do about the answer
(retry, split, dead-letter) is :mod:`publisher.delivery`'s business.
"""
from __future__ import annotations

import email.utils
import hashlib
import hmac
import time
import zlib
from dataclasses import dataclass
from typing import Optional

from .metrics import Metrics
from .sections import CollectorSection, KeySection
from .transport import Transport, TransportError

USER_AGENT = "baseplate-events-publisher/0.1"
#: How much of a refusal's body is kept for logs and dead letters.
MAX_REASON = 1000


@dataclass(frozen=True)
class Answer:
    """What came back from one POST."""

    status: Optional[int]  # None: no HTTP answer (timeout, refused, reset)
    reason: str
    retry_after: Optional[float] = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def sign(key_name: str, secret: bytes, body: bytes) -> str:
    """The ``X-Signature`` header for ``body`` (uncompressed)."""
    mac = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return f"key={key_name}, mac={mac}"


def _zlib_gzip(body: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31, 8, zlib.Z_FILTERED)
    return compressor.compress(body) + compressor.flush()


try:
    import deflate as _deflate
except ImportError:  # pragma: no cover - the publisher extra installs it
    _deflate = None  # type: ignore[assignment]


def gzip_compress(body: bytes, level: int) -> bytes:
    """One gzip member of ``body``; the GIL is released while it works.

    libdeflate (the ``deflate`` package) compresses a whole buffer at once and
    at level 6 needs about half of zlib's CPU for the same size (see the README's
    performance notes). Without it, zlib with ``Z_FILTERED``, which suits event
    JSON (digits, ids) better than the default strategy.
    """
    if _deflate is not None:
        return bytes(_deflate.gzip_compress(body, level))
    return _zlib_gzip(body, level)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Sender:
    """POSTs batch bodies to the collector, one at a time, over one keep-alive connection.

    The HTTP is :class:`~publisher.transport.Transport`'s (requests); each POST,
    connect to answer, ends within ``timeout`` seconds.
    """

    def __init__(
        self,
        url: str,
        key_name: str,
        secret: bytes,
        *,
        timeout: float,
        gzip_level: int,
        metrics: Metrics,
        ca_file: Optional[str] = None,
    ) -> None:
        self.url = url
        self._key_name = key_name
        self._secret = secret
        self.timeout = timeout
        self.gzip_level = gzip_level
        self.metrics = metrics
        self.bytes_sent = 0
        self.transport = Transport(url, timeout, ca_file)
        self._date_second = -1
        self._date_text = ""

    @classmethod
    def from_config(cls, collector: CollectorSection, key: KeySection, metrics: Metrics
                    ) -> "Sender":
        """The sender to the collector of ``collector.*``, signing with ``key.*``."""
        return cls(collector.url, key.name, key.secret, timeout=collector.timeout,
                   gzip_level=collector.gzip_level, metrics=metrics, ca_file=collector.ca_file)

    def _date(self) -> str:
        """The ``Date`` header, formatted once a second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_text = email.utils.formatdate(now, usegmt=True)
        return self._date_text

    def post(self, body: bytes, count: int) -> Answer:
        """Send one batch body holding ``count`` events; never raises for a collector problem."""
        compressed = gzip_compress(body, self.gzip_level)
        # The order of baseplate's publisher, after the Host that the transport puts first.
        headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Date": self._date(),
            "Content-Length": str(len(compressed)),
            "X-Signature": sign(self._key_name, self._secret, body),
        }
        started = time.perf_counter()
        try:
            reply = self.transport.post(headers, compressed)
        except TransportError as exc:
            self.metrics.incr("error.io")
            return Answer(None, str(exc))
        finally:
            self.metrics.timing("post", (time.perf_counter() - started) * 1000)
        self.bytes_sent += len(compressed)
        status = reply.status
        if 200 <= status < 300:
            self.metrics.incr("sent", count)
            return Answer(status, "")
        self.metrics.incr("error.http")
        reason = reply.body[:MAX_REASON].decode("utf-8", "replace").strip() or reply.reason
        return Answer(status, reason, parse_retry_after(reply.headers.get("Retry-After")))

    @property
    def connections(self) -> int:
        """Connections opened so far (one, unless the collector or the network closed one)."""
        return self.transport.connections

    def close(self) -> None:
        self.transport.close()
