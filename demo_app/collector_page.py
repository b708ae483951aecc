"""The collector's live page: ``GET /`` and its script and style, served from the package.

The page is static: a small script (``page/page.js``) polls ``/api/stats``
and ``/api/events?limit=…`` every second and draws the answers, so it updates
without a reload and works offline (nothing comes from another site). Every
value it shows is put into the page as text (``textContent``), never as HTML,
and the Content-Security-Policy below lets only the page's own script and
style run: an event whose fields carry markup is shown, never executed.
"""
from __future__ import annotations

from importlib.resources import files
from typing import Callable, Dict, FrozenSet, Optional, Tuple

from pyramid.request import Request
from pyramid.response import Response

__all__ = ["ASSETS", "LOOPBACK_NAMES", "SECURITY_HEADERS", "asset_view", "page_hosts",
           "same_host_only"]

#: path → (file under demo_app/page/, content type)
ASSETS: Dict[str, Tuple[str, str]] = {
    "/": ("index.html", "text/html"),
    "/page.js": ("page.js", "text/javascript"),
    "/page.css": ("page.css", "text/css"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


#: the names a loopback collector's page answers to
LOOPBACK_NAMES: FrozenSet[str] = frozenset({"localhost", "127.0.0.1", "::1"})


def page_hosts(listen_host: str) -> Optional[FrozenSet[str]]:
    """The ``Host`` names the page answers to when listening on ``listen_host`` (None: any)."""
    name = listen_host.strip("[]").lower()
    if name in ("", "0.0.0.0", "::"):
        return None
    return LOOPBACK_NAMES | {name}


def _host_name(host: str) -> str:
    """``Host`` without its port: ``[::1]:8080`` → ``::1``, ``localhost:8080`` → ``localhost``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def same_host_only(view: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """``view``, answering 403 to a request whose ``Host`` is not a name of this collector."""
    def guarded(request: Request) -> Response:
        allowed: Optional[FrozenSet[str]] = request.registry.get("page_hosts")
        host = request.headers.get("Host", "")
        if allowed is not None and _host_name(host) not in allowed:
            body = (f"this page answers only to {', '.join(sorted(allowed))} (asked for "
                    f"{host[:100]!r}); to serve it under another name, listen there with "
                    f"--host\n")
            return Response(body=body.encode("utf-8"), status=403, content_type="text/plain",
                            charset="utf-8")
        return view(request)

    return guarded


def asset_view(request: Request) -> Response:
    name, content_type = ASSETS[request.path_info]
    body = files("demo_app").joinpath("page", name).read_bytes()
    response = Response(body=body, content_type=content_type, charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response
