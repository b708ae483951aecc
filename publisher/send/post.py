"""One POST of one batch: gzip, sign, send (over :mod:`.transport`), classify the answer.

The wire format is baseplate.py's: ``POST {scheme}://{hostname}/v{version}``
with ``Date``, ``User-Agent``, ``Content-Type: application/json``,
``Content-Encoding: gzip`` and ``X-Signature: key=NAME, mac=HEX`` where the
MAC is HMAC-SHA256 of the *uncompressed* body. What to do about the answer
(retry, split, dead-letter) is :mod:`publisher.send.delivery`'s business.
"""
from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import AbstractSet, Optional

from publisher.metrics.counters import Metrics
from publisher.config.sections import CollectorSection, KeySection
from publisher.send.transport import Reply, Transport, TransportError

USER_AGENT = "baseplate-events-publisher/0.1"
#: How much of a refusal's body is kept for logs and dead letters.
MAX_REASON = 1000
#: How much of a kept answer's body (and of its reason, Content-Type or Location)
#: its log line shows, escaped.
SHOWN_BODY = 200
#: ``collector.success_statuses`` by default: what a collector answers to a batch it stored.
DEFAULT_SUCCESS = frozenset({200, 202, 204})
#: ``collector.success_statuses = 2xx``: baseplate's rule, any status below 400 (a
#: redirect, never followed, aside).
ANY_SUCCESS = frozenset(range(200, 400))


@dataclass(frozen=True)
class Answer:
    """What came back from one POST."""

    status: Optional[int]  # None: no HTTP answer (timeout, refused, reset)
    reason: str
    retry_after: Optional[float] = None
    #: Whether the batch counts as delivered; None: any 2xx (an answer made by hand).
    delivered: Optional[bool] = field(default=None, compare=False)
    #: For an answer that is kept though not a refusal (a 2xx that does not say the
    #: batch was stored, a redirect): what it is, for its once-a-minute log line.
    kept: Optional[str] = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        if self.delivered is not None:
            return self.delivered
        return self.status is not None and 200 <= self.status < 300


def _escaped(text: bytes) -> str:
    """``text`` as a quoted Python literal: control bytes and non-ASCII escaped."""
    return repr(text)[1:]


def _printable(text: str) -> str:
    """``text`` cut to :data:`SHOWN_BODY` characters, quoted and escaped unless plain ASCII."""
    text = text[:SHOWN_BODY]
    return text if text.isascii() and text.isprintable() else repr(text)


def _json_type(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def kept_reason(reply: Reply, count: int, success: AbstractSet[int], accept_html: bool
                ) -> Optional[str]:
    """Why an answer with a success status does not deliver ``count`` events, or None.

    A JSON object with an integer ``accepted`` must count them all
    (``accepted`` + ``duplicates``); an HTML page (a captive portal, a load
    balancer's error page) is no collector's answer unless
    ``collector.accept_html``; any other body delivers.
    """
    if reply.status not in success:
        return (f"to accept it, add {reply.status} to collector.success_statuses (default "
                "200,202,204; 2xx takes any status below 400)")
    content_type = reply.headers.get("Content-Type", "")
    if _json_type(content_type):
        try:
            document = json.loads(reply.body)
        except (ValueError, RecursionError):  # RecursionError: nested past the stack
            return None
        if isinstance(document, dict) and type(document.get("accepted")) is int:
            accepted, duplicates = document["accepted"], document.get("duplicates", 0)
            if (type(duplicates) is not int or min(accepted, duplicates) < 0
                    or accepted + duplicates != count):
                return (f"no setting accepts it, as it counts other events than the {count} "
                        "sent: check that collector.hostname names the event collector")
        return None
    if not accept_html and content_type.split(";", 1)[0].strip().lower() == "text/html":
        return "to accept it, set collector.accept_html = true"
    return None


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


class Poster:
    """POSTs batch bodies to the collector, one at a time, over one keep-alive connection.

    The sender thread (:mod:`publisher.daemon`, ``sender.*``) posts through one.

    The HTTP is :class:`~publisher.send.transport.Transport`'s (requests); each POST,
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
        success_statuses: AbstractSet[int] = DEFAULT_SUCCESS,
        accept_html: bool = False,
    ) -> None:
        self.url = url
        self.success_statuses = success_statuses
        self.accept_html = accept_html
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
                    ) -> "Poster":
        """The sender to the collector of ``collector.*``, signing with ``key.*``."""
        return cls(collector.url, key.name, key.secret, timeout=collector.timeout,
                   gzip_level=collector.gzip_level, metrics=metrics, ca_file=collector.ca_file,
                   success_statuses=collector.success_statuses,
                   accept_html=collector.accept_html)

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
        if 300 <= status < 400 and "Location" in reply.headers:
            return self._redirect(reply)
        if status in self.success_statuses:
            accepting = kept_reason(reply, count, self.success_statuses, self.accept_html)
            if accepting is None:
                self.metrics.incr("sent", count)
                return Answer(status, "", delivered=True)
            return self._kept(reply, accepting)
        if status < 300:
            return self._kept(reply, kept_reason(reply, count, self.success_statuses,
                                                 self.accept_html) or "")
        if status < 400:
            return self._redirect(reply)
        self.metrics.incr("error.http")
        reason = reply.body[:MAX_REASON].decode("utf-8", "replace").strip() or reply.reason
        return Answer(status, reason, parse_retry_after(reply.headers.get("Retry-After")))

    def _kept(self, reply: Reply, accepting: str) -> Answer:
        """A 2xx that does not say the batch was stored: kept, counted, retried."""
        self.metrics.incr("error.answer")
        content_type = reply.headers.get("Content-Type")
        kept = (
            f"collector answered {reply.status} {_printable(reply.reason)}".rstrip()
            + f" (Content-Type: "
            f"{'none' if content_type is None else repr(content_type[:SHOWN_BODY])}, "
            f"first {SHOWN_BODY} bytes: {_escaped(reply.body[:SHOWN_BODY])}), which does not "
            f"say the batch was stored; {accepting}"
        )
        return Answer(reply.status, f"{reply.status} {_printable(reply.reason)}".rstrip(),
                      delivered=False, kept=kept)

    def _redirect(self, reply: Reply) -> Answer:
        """A 3xx: never followed (a POST's body would not go along); kept, counted, retried."""
        self.metrics.incr("error.redirect")
        location = reply.headers.get("Location")
        shown = "none"
        if location is not None:
            shown = _escaped(location[:SHOWN_BODY].encode("latin-1", "replace"))[1:-1]
        kept = (
            f"collector answered {reply.status} (Location: {shown}); redirects are not "
            f"followed: set collector.hostname and collector.scheme to where events go "
            f"(now {self.url})"
        )
        return Answer(reply.status, f"{reply.status} (Location: {shown})", delivered=False,
                      kept=kept)

    @property
    def connections(self) -> int:
        """Connections opened so far (one, unless the collector or the network closed one)."""
        return self.transport.connections

    def close(self) -> None:
        self.transport.close()
