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
from typing import Dict, Tuple

from pyramid.request import Request
from pyramid.response import Response

__all__ = ["ASSETS", "SECURITY_HEADERS", "asset_view"]

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


def asset_view(request: Request) -> Response:
    name, content_type = ASSETS[request.path_info]
    body = files("demo_app").joinpath("page", name).read_bytes()
    response = Response(body=body, content_type=content_type, charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response
