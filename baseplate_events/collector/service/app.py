"""The collector's WSGI app (Pyramid): intake, decoding, the sink, health and readiness.

Routes:

- ``POST /v1``, ``/v2``, ``/v2j``: a signed, gzipped batch. The checks of
  :mod:`~baseplate_events.collector.service.intake`, then the decoding of
  :mod:`~baseplate_events.collector.decode.batches`, then the sink. The answer is
  JSON: 200 ``{"accepted": N, "duplicates": D}`` only after the sink has the
  whole batch; 4xx ``{"error": ...}`` (422 with ``"refused": [{"index",
  "uuid", "reason"}, ...]``); 503 with ``Retry-After`` only while the sink
  is unavailable; 500 with the reason for a collector bug on this batch.
  Never 500 or 503 for an event: what cannot be decoded or stored for a
  reason of its own is a 422 naming it. A malformed request (a path that is
  not UTF-8 once percent-decoded, no length, a body that cannot be read) is a
  4xx with the reason, never a traceback.
- ``GET /healthz``: 200 ``ok`` while the process serves (liveness).
- ``GET /readyz``: 200 ``ready``, or 503 while the sink cannot take a batch
  (readiness: a load balancer sends batches elsewhere meanwhile): from a
  batch the sink could not take until a probe of the sink, at most every 2 s
  and in a thread of its own, succeeds (see
  :class:`~baseplate_events.collector.service.handler.SinkHealth`). Neither health
  view ever waits for the sink.

Every answer is counted in the collector's metrics
(:mod:`~baseplate_events.collector.service.metrics`).

The app sets no hop-by-hop header (``Connection``): waitress and gunicorn
own the connection, and a body the app leaves unread is theirs to drain.

The app keeps no state between requests but its sink, so any number of them,
in any number of processes, can stand behind one load balancer.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from pyramid.config import Configurator
from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPException
from pyramid.request import Request
from pyramid.response import Response

from ..decode.batches import EventReader
from .intake import Refused, declared_length
from ..decode.schema import load_schema
from .handler import PATHS, CollectorService, internal_error
from .settings import parse_settings
from ..sinks import Sink, create_sink

__all__ = ["DRAIN_FACTOR", "make_app", "make_configurator"]

logger = logging.getLogger("baseplate_events.collector.app")  # the name users configure

#: A body up to this many times the cap is read and dropped before the 413, so
#: that the client reads the answer and the connection stays usable; a bigger
#: one is answered at once (waitress refuses it itself, past
#: ``max_request_body_size``; gunicorn drains it before the next request).
DRAIN_FACTOR = 8


def _json(status: int, answer: Dict[str, Any], **headers: str) -> Response:
    response = Response(body=json.dumps(answer).encode("utf-8"), status=status,
                        content_type="application/json", charset=None)
    response.headers.update(headers)
    return response


def _read_body(request: Request, collector: CollectorService
               ) -> Tuple[Optional[bytes], Optional[Response]]:
    """The request body, or the answer refusing it (411, 400, 413) before it is read."""
    environ = request.environ
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    stream = environ["wsgi.input"]
    max_body = collector.settings.max_body
    try:
        length = declared_length(environ.get("CONTENT_LENGTH"), chunked, max_body)
    except Refused as refusal:
        declared = refusal.extra.pop("length", None)
        if declared is not None and declared <= DRAIN_FACTOR * max_body:
            _read_quietly(_discard, stream, declared)
        status, answer = refusal.answer()
        return None, _json(status, answer)
    if length is None:  # chunked: read to the end, up to the cap
        body, problem = _read_quietly(stream.read, max_body + 1)
        if problem is not None:
            return None, problem
        if len(body) > max_body:
            return None, _json(413, {"error": f"body is over {max_body} bytes; the collector "
                                              f"takes at most {max_body}"})
        return body, None
    body, problem = _read_quietly(stream.read, length)
    if problem is not None:
        return None, problem
    if len(body) != length:
        return None, _json(400, {"error": f"body ended after {len(body)} of {length} bytes"})
    return body, None


def _read_quietly(read: Callable[..., Any], *args: Any) -> Tuple[Any, Optional[Response]]:
    """``read(*args)``, or a 400 when the server cannot read the body (a chunk that is
    not one, a client gone mid-body): the request's fault, never a 500."""
    try:
        return read(*args), None
    except Exception as exc:  # gunicorn's InvalidChunkSize, NoMoreData (OSError)...
        detail = f"{type(exc).__name__}: {exc}"[:200]
        return b"", _json(400, {"error": f"the body could not be read: {detail}"})


def _discard(stream: Any, length: int) -> None:
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            return
        length -= len(chunk)


_HEADERS = {"X-Signature": "HTTP_X_SIGNATURE", "Date": "HTTP_DATE",
            "Content-Encoding": "HTTP_CONTENT_ENCODING", "Content-Type": "CONTENT_TYPE"}


def batch_view(request: Request) -> Response:
    collector: CollectorService = request.registry["collector"]
    body, refusal = _read_body(request, collector)
    if refusal is not None:
        collector.count(refusal.status_code)
        return refusal
    headers = {name: request.environ[key] for name, key in _HEADERS.items()
               if key in request.environ}
    status, answer = collector.take(request.path_info, headers, body or b"")
    collector.count(status)
    if status == 503:
        return _json(status, answer, **{"Retry-After": str(collector.settings.retry_after)})
    return _json(status, answer)


def method_not_allowed_view(request: Request) -> Response:
    return _json(405, {"error": f"{request.method} is not allowed here; POST a batch"},
                 Allow="POST")


def not_found_view(request: Request) -> Response:
    return _json(404, {"error": f"no such endpoint {request.path_info[:64]!r}; "
                                "POST to /v1, /v2 or /v2j"})


def undecodable_path_view(exc: URLDecodeError, request: Request) -> Response:
    """A path that is not UTF-8 once percent-decoded (``/%ff``): 400, naming it."""
    path = request.environ.get("PATH_INFO", "")
    shown = path.encode("latin-1", "replace")[:64]  # WSGI's PATH_INFO: the bytes as latin-1
    return _json(400, {"error": f"the path {shown!r} is not UTF-8 once percent-decoded; "
                                "POST to /v1, /v2 or /v2j"})


def internal_error_view(exc: Exception, request: Request) -> Response:
    """Anything else a view raised: 500 with the reason, logged with its traceback
    (one line a minute per reason); an HTTP exception is its own answer."""
    if isinstance(exc, HTTPException):
        return exc
    reason, where = internal_error(exc)
    collector: CollectorService = request.registry["collector"]
    collector.rate_limited(logging.ERROR, where, "collector: answered 500 to %s %s: %s",
                           request.method, request.environ.get("PATH_INFO", "")[:64], reason,
                           exc_info=exc)
    return _json(500, {"error": reason})


def healthz_view(request: Request) -> Response:
    return Response(body=b"ok\n", content_type="text/plain", charset=None)


def readyz_view(request: Request) -> Response:
    collector: CollectorService = request.registry["collector"]
    if collector.health.ready():
        return Response(body=b"ready\n", content_type="text/plain", charset=None)
    response = Response(body=b"the sink is unavailable\n", status=503,
                        content_type="text/plain", charset=None)
    response.headers["Retry-After"] = str(collector.settings.retry_after)
    return response


def metrics_tween(handler: Callable[[Request], Response], registry: Any
                  ) -> Callable[[Request], Response]:
    """Counts every answer by path and status in the collector's metrics."""
    collector: CollectorService = registry["collector"]

    def tween(request: Request) -> Response:
        response = handler(request)
        # PATH_INFO as the server gave it: request.path_info raises on a path not UTF-8
        collector.metrics.request(request.environ.get("PATH_INFO", ""), response.status_code)
        return response

    return tween


def make_configurator(
    settings: Mapping[str, Any],
    *,
    sink: Optional[Sink] = None,
    clock: Callable[[], float] = time.time,
) -> Configurator:
    """A Pyramid configurator holding the collector; add views to it, then make the app.

    :param sink: a sink already made (tests, the demo); otherwise the settings'.
    :param clock: seconds since the epoch, for the ``Date`` check and receipt
        times; tests pass a fake one.
    :raises ConfigError: a setting is invalid.
    :raises SchemaError: ``schema`` does not name a generated struct class.
    """
    parsed = parse_settings(settings)
    schema = load_schema(parsed.schema) if parsed.schema else None
    reader = EventReader(schema, parsed.uuid_field)
    make_sink = None
    if sink is None:
        def make_sink() -> Sink:
            return create_sink(parsed.sink, parsed.sink_options)

        sink = make_sink()
    config = Configurator()
    config.registry["collector"] = CollectorService(parsed, reader, sink, clock, make_sink)
    for path in PATHS:
        name = "batch" + path.replace("/", "-")
        config.add_route(name, path)
        config.add_view(batch_view, route_name=name, request_method="POST")
        config.add_view(method_not_allowed_view, route_name=name)
    config.add_route("healthz", "/healthz")
    config.add_view(healthz_view, route_name="healthz", request_method=("GET", "HEAD"))
    config.add_route("readyz", "/readyz")
    config.add_view(readyz_view, route_name="readyz", request_method=("GET", "HEAD"))
    config.add_notfound_view(not_found_view)
    config.add_tween("baseplate_events.collector.service.app.metrics_tween")
    config.add_exception_view(undecodable_path_view, context=URLDecodeError)
    config.add_exception_view(internal_error_view, context=Exception)
    return config


def log_through_gunicorn() -> bool:
    """Under gunicorn, send the collector's log lines to gunicorn's error log.

    gunicorn configures only its own loggers; the collector's lines would
    otherwise go nowhere (no handler) or, below WARNING, be dropped. When the
    process runs gunicorn and the application has configured no logging of its
    own (no handler on the root logger or on ``baseplate_events``), the
    ``baseplate_events`` loggers take gunicorn's error-log handlers and level:
    ``--error-logfile``, ``--log-level`` and ``--log-config`` apply to them.

    :returns: whether the collector's lines now reach gunicorn's error log.
    """
    if "gunicorn" not in sys.modules:
        return False
    ours = logging.getLogger("baseplate_events")
    gunicorn_log = logging.getLogger("gunicorn.error")
    if not gunicorn_log.handlers:
        return False
    if any(h in ours.handlers for h in gunicorn_log.handlers):
        return True  # a second app in this process (gunicorn --reload)
    if ours.handlers or logging.getLogger().handlers:
        return False  # the application's own logging configuration decides
    for handler in gunicorn_log.handlers:
        ours.addHandler(handler)
    ours.setLevel(gunicorn_log.getEffectiveLevel())
    ours.propagate = False
    return True


def make_app(settings: Mapping[str, Any], **options: Any) -> Any:
    """The collector's WSGI app from its settings (see
    :mod:`~baseplate_events.collector.service.settings`).

    For gunicorn: ``gunicorn 'baseplate_events.collector:make_app({"sink": "jsonl", ...})'``.
    """
    config = make_configurator(settings, **options)
    collector: CollectorService = config.registry["collector"]
    if "sink" not in options:  # ours to close when the process exits (a gunicorn worker)
        atexit.register(collector.close)
        # the start line of this process (each gunicorn worker makes its app)
        line = (f"collector app made in process {os.getpid()} (keys: "
                f"{', '.join(sorted(collector.settings.keys))}; sink: "
                f"{collector.describe_sink()})")
        if log_through_gunicorn():
            logger.info("%s", line)
        else:
            print(line, file=sys.stderr, flush=True)
    return config.make_wsgi_app()
