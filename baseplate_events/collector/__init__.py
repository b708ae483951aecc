"""The event collector: the far end of the pipeline, a WSGI service a site can run.

``make_app(settings)`` builds the WSGI app (:mod:`.app`; the settings are in
:mod:`.settings`); ``python -m baseplate_events.collector`` serves it with
waitress, and gunicorn runs it with several workers::

    gunicorn -w 4 -b 0.0.0.0:8080 'baseplate_events.collector:make_app({
        "publisher_config": "/etc/publisher.ini",
        "sink": "jsonl", "jsonl.directory": "/var/lib/events"})'

Where events go is a sink; the contract every sink keeps is in
:mod:`baseplate_events.collector.sinks`. Needs the ``collector`` extra
(Pyramid and waitress).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["make_app"]


def make_app(settings: Mapping[str, Any], **options: Any) -> Any:
    """The collector's WSGI app; see :func:`baseplate_events.collector.service.app.make_app`."""
    from .service.app import make_app as _make_app  # Pyramid is imported only when an app is made

    return _make_app(settings, **options)
