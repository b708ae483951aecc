"""One POST of one batch: gzip, sign, send over a keep-alive connection, classify the answer.

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
import ssl
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Optional

from .http11 import Connection
from .metrics import Metrics

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
    """POSTs batch bodies to the collector over one keep-alive HTTP/1.1 connection.

    A POST is one ``sendall`` on a :class:`~publisher.http11.Connection`. The
    ``http(s)_proxy`` and ``no_proxy`` environment is read once, at start.
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
    ) -> None:
        self.url = url
        self._key_name = key_name
        self._secret = secret
        self.timeout = timeout
        self.gzip_level = gzip_level
        self.metrics = metrics
        self.bytes_sent = 0
        #: Connections opened so far (one, unless the collector or the network closed one).
        self.connections = 0
        parts = urllib.parse.urlsplit(url)
        https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if https else 80)
        self._target = parts.path or "/"
        self._proxy: Optional[urllib.parse.SplitResult] = None
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.netloc):
            self._proxy = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
            if not https:
                self._target = url  # a plain-HTTP proxy takes the absolute URL
        self._ssl = ssl.create_default_context() if https else None
        self._conn: Optional[Connection] = None
        self._head = (
            f"POST {self._target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"User-Agent: {USER_AGENT}\r\nContent-Type: application/json\r\n"
            "Content-Encoding: gzip\r\n"
        )
        self._date_second = -1
        self._date_text = ""

    def _date(self) -> str:
        """The ``Date`` header, formatted once a second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_text = email.utils.formatdate(now, usegmt=True)
        return self._date_text

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.idle_closed():
            conn.close()  # closed by the collector while idle: start afresh
            conn = None
        if conn is None:
            via = None
            if self._proxy is not None:
                via = (self._proxy.hostname or "", self._proxy.port or 80)
            conn = Connection(self._host, self._port, self.timeout, self._ssl, via)
            self._conn = conn
            self.connections += 1
        return conn

    def post(self, body: bytes, count: int) -> Answer:
        """Send one batch body holding ``count`` events; never raises for a collector problem."""
        compressed = gzip_compress(body, self.gzip_level)
        head = (
            f"{self._head}Date: {self._date()}\r\nContent-Length: {len(compressed)}\r\n"
            f"X-Signature: {sign(self._key_name, self._secret, body)}\r\n\r\n"
        ).encode("latin-1")
        started = time.perf_counter()
        try:
            conn = self._connection()
            response, reusable = conn.request(head, compressed)
            if not reusable:
                self.close()
        except OSError as exc:
            self.close()
            self.metrics.incr("error.io")
            return Answer(None, f"{type(exc).__name__}: {_first_line(exc)}")
        finally:
            self.metrics.timing("post", (time.perf_counter() - started) * 1000)
        self.bytes_sent += len(compressed)
        status = response.status
        if 200 <= status < 300:
            self.metrics.incr("sent", count)
            return Answer(status, "")
        self.metrics.incr("error.http")
        text = response.body
        reason = text[:MAX_REASON].decode("utf-8", "replace").strip() or response.reason or ""
        return Answer(status, reason, parse_retry_after(response.header("Retry-After")))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
