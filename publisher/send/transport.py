"""The HTTP under the sender: one ``requests`` Session, one connection, a deadline per POST.

``requests`` (over urllib3) speaks the HTTP: keep-alive, lenient answer
parsing, proxies from the environment (their credentials go in
``Proxy-Authorization``, an ``https://`` proxy is spoken to over TLS) and
certificate checks. Retries are not its business: the adapter makes none, and
:mod:`publisher.send.delivery` decides what an answer means.

Its timeouts bound each socket operation, not a request: a collector that
trickles its answer a byte a second, or sends ``100 Continue`` for ever, holds
a POST as long as it likes. So a :class:`~publisher.send.deadline.Watchdog`
thread shuts the connection's socket down when a POST overruns its deadline;
the blocked read or write then fails, and the POST ends as an I/O error.
"""
from __future__ import annotations

import http.client
import http.cookiejar
import logging
import os
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import requests
import requests.certs
import requests.utils
import urllib3.exceptions
import urllib3.util
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from publisher.send.deadline import Watchdog, watched_pools
from publisher.send.throttle import Throttle

# Named as before the move into folders, so that logging configs naming it still apply.
logger = logging.getLogger("publisher.transport")

#: Most of an answer's body read; a longer one is cut and its connection closed.
MAX_ANSWER = 1 << 20


class TransportError(OSError):
    """No complete answer to a POST; the message says why, on one line."""


class InterimAnswerError(http.client.HTTPException):
    """``101 Switching Protocols`` to a POST: no collector answers that."""


class _FinalAnswer(http.client.HTTPResponse):
    """Reads past every interim (1xx) answer to the final one.

    http.client skips ``100 Continue`` only, and takes any other 1xx (``102
    Processing``, ``103 Early Hints``) for the answer: its final answer would
    then be read as the answer to the next POST. Here each 1xx status line and
    its headers are read and dropped, however many come, and the final status
    line is handed on. ``101`` ends the POST: it means the connection now speaks
    another protocol. The whole-POST deadline bounds the wait, as for any read.
    """

    def _read_status(self) -> "tuple[str, int, str]":
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status == 101:
                raise InterimAnswerError(
                    f"the collector answered 101 {reason.strip()} (an interim answer that "
                    "switches protocols) to a POST"
                )
            if status == http.client.CONTINUE or not 100 <= status < 200:
                # 100's headers are skipped by begin() itself.
                return version, status, reason
            http.client.parse_headers(self.fp)


@dataclass(frozen=True)
class Reply:
    """A collector's answer."""

    status: int
    reason: str  # the status line's reason phrase
    headers: Mapping[str, str]  # case-insensitive
    body: bytes  # at most MAX_ANSWER bytes


def _without_credentials(proxy: Optional[str]) -> Optional[str]:
    if not proxy:
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


#: The proxy variables requests reads (each also in capitals; the lower-case one wins).
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
#: Proxy URL schemes requests can speak (socks* with the PySocks package).
PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
PROXY_FIX = ("set it to http://HOST:PORT (or https://; credentials as USER:PASSWORD@ before "
             "the host, with an @ or : in them written %40 or %3A) or unset it")


def mask_credentials(proxy: str) -> str:
    """``proxy`` with the password (or a lone user name, often a token) as ``***``.

    Works on text that is no valid URL too: the credentials are whatever comes
    before the last ``@`` of the part between ``://`` and the first ``/``.
    """
    scheme, sep, rest = proxy.partition("://")
    if not sep:
        scheme, rest = "", proxy
    authority_end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            authority_end = min(authority_end, found)
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" not in authority:
        return proxy
    userinfo, _, host = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}{sep}{shown}@{host}{tail}"


def _proxy_problem(proxy: str) -> Optional[str]:
    """What keeps requests from using ``proxy``, or None."""
    full = proxy if "://" in proxy else "http://" + proxy
    try:
        parts = urllib.parse.urlsplit(full)
        host, _port = parts.hostname, parts.port  # .port checks its range
    except ValueError as exc:
        # "Invalid IPv6 URL", "Port out of range 0-65535": no credentials in these.
        return f"not a valid proxy URL ({exc})"
    if parts.scheme.lower() not in PROXY_SCHEMES:
        return f"not a proxy URL: scheme {parts.scheme!r} (expected http or https)"
    if not host:
        return "not a valid proxy URL (no host)"
    try:
        urllib3.util.parse_url(full)
    except urllib3.exceptions.LocationParseError:
        return "not a valid proxy URL (its host or port cannot be read)"
    return None


class ProxyVariableError(ValueError):
    """A proxy variable in the environment that requests cannot use; one line, secret-free."""


def check_proxy_environment(environ: Optional[Mapping[str, str]] = None) -> None:
    """Refuse a malformed ``http_proxy``, ``https_proxy`` or ``all_proxy`` (any case).

    Checked at start-up, so that a bad variable stops the start with one line
    instead of failing every POST; only the variables requests would read
    (the lower-case one where both are set).

    :raises ProxyVariableError: naming the variable, its value with the
        credentials masked, what is wrong and the fix.
    """
    env = os.environ if environ is None else environ
    for base in PROXY_VARIABLES:
        name = base if base in env else base.upper()
        if name == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue  # as urllib: under CGI, HTTP_PROXY is a request header
        value = env.get(name, "").strip()
        if not value:
            continue
        problem = _proxy_problem(value)
        if problem is not None:
            raise ProxyVariableError(f"{name}={mask_credentials(value)}: {problem}; {PROXY_FIX}")


def _describe(exc: BaseException) -> str:
    """The innermost cause of ``exc``, on one line (requests wraps urllib3 wraps OSError)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no detail'}"


#: What the network and a hostile peer can make the HTTP stack raise.
_EXPECTED = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
             OSError)


class _OneConnectionAdapter(HTTPAdapter):
    """One pooled connection, no retries, its sockets watched, the proxy's certificate checked."""

    def __init__(self, watchdog: Watchdog, proxy_tls: ssl.SSLContext) -> None:
        self._pool_classes = watched_pools(watchdog, _FinalAnswer)
        self._proxy_tls = proxy_tls
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if proxy not in self.proxy_manager and proxy.lower().startswith("https:"):
            # requests leaves the proxy's certificate unchecked when the collector
            # is plain http; this context checks it in every case.
            proxy_kwargs["proxy_ssl_context"] = self._proxy_tls
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pool_classes
        return manager


class Transport:
    """POSTs to one URL over one keep-alive connection; each POST ends within ``timeout``.

    The ``http(s)_proxy`` and ``no_proxy`` environment is read once, here;
    nothing else from the environment (``.netrc``, ``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``) applies. Certificates, the collector's and an
    ``https://`` proxy's, are always checked: against ``ca_file`` if given,
    else requests' bundle (certifi).
    """

    def __init__(self, url: str, timeout: float, ca_file: Optional[str] = None) -> None:
        self.url = url
        self.timeout = timeout
        self.watchdog = Watchdog()
        self._verify: Any = ca_file or True
        self.proxies: Dict[str, str] = requests.utils.get_environ_proxies(url)
        #: The proxy the POSTs go through, without its credentials (None: direct).
        self.proxy = _without_credentials(requests.utils.select_proxy(url, self.proxies))
        if self.proxy is not None:
            logger.info("posting to %s through the proxy %s (from the environment)", url,
                        self.proxy)
        proxy_tls = ssl.create_default_context(cafile=ca_file or requests.certs.where())
        session = requests.Session()
        session.trust_env = False
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = _OneConnectionAdapter(self.watchdog, proxy_tls)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._adapter = adapter
        self._unexpected = Throttle()
        self._url = session.prepare_request(requests.Request("POST", url)).url
        self.session = session

    def post(self, headers: Dict[str, str], body: bytes) -> Reply:
        """POST ``body`` and read the answer, all within ``timeout``.

        The adapter sends it, not ``Session.send``: nothing here follows a
        redirect or reads more than ``MAX_ANSWER`` bytes of any answer, a 3xx's
        included. Whatever requests, urllib3 or the watchdog raise ends the POST
        as a :class:`TransportError`, so that the caller backs off as for any
        outage.

        :raises TransportError: no complete answer (refused, reset, TLS, deadline).
        """
        try:
            self.watchdog.arm(self.timeout)
            response = self._adapter.send(
                self._request(headers, body),
                stream=True,
                timeout=self.timeout,
                verify=self._verify,
                proxies=self.proxies,
            )
            try:
                # At most MAX_ANSWER bytes: a longer answer is cut and its connection closed.
                content = response.raw.read(MAX_ANSWER, decode_content=True)
            finally:
                response.close()
        except Exception as exc:
            fired = self.watchdog.disarm()
            if isinstance(exc, requests.ConnectTimeout):
                raise TransportError(
                    f"no connection within collector.timeout ({self.timeout:g}s)"
                ) from exc
            # A read that waited the whole timeout for a byte is the same overrun
            # as the watchdog's cut, whichever of the two came first: one message.
            if fired or isinstance(
                exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)
            ):
                raise TransportError(self._overran) from exc
            if not isinstance(exc, _EXPECTED) and self._unexpected.due("traceback") is not None:
                # Not the network's doing: worth its traceback, once a minute.
                logger.error("POST to %s: unexpected error (treated as no answer)", self.url,
                             exc_info=True)
            raise TransportError(_describe(exc)) from exc
        if self.watchdog.disarm():
            # The cut can look like a clean end (http.client takes the end of the
            # connection for the end of chunked trailers): do not trust this answer.
            raise TransportError(self._overran)
        return Reply(response.status_code, response.reason or "", response.headers, content)

    def _request(self, headers: Dict[str, str], body: bytes) -> requests.PreparedRequest:
        """The POST, prepared by hand for the adapter.

        ``Session.request`` merges settings that never change here and, measured
        with ``benchmarks.post``, doubled the HTTP's CPU per POST (420 µs, 215 µs
        prepared by hand, against 25-45 µs for the hand-written client it
        replaced); the adapter alone takes about 206 µs.
        """
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = self._url
        # Only the sender's headers, as before: no "Accept-Encoding: identity"
        # from http.client (which is what it means anyway).
        request.headers = CaseInsensitiveDict({"Accept-Encoding": urllib3.util.SKIP_HEADER})
        request.headers.update(headers)
        request.body = body
        return request

    @property
    def _overran(self) -> str:
        return f"no complete answer within collector.timeout ({self.timeout:g}s)"

    @property
    def connections(self) -> int:
        """Connections opened so far."""
        return self.watchdog.adopted

    def close(self) -> None:
        self.session.close()
        self.watchdog.stop()
