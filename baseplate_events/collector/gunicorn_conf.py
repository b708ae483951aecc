"""gunicorn settings for the collector, at the name the docs give.

``gunicorn -c python:baseplate_events.collector.gunicorn_conf``; the settings
and hooks live in :mod:`baseplate_events.collector.service.gunicorn_conf`.
"""
from __future__ import annotations

from .service.gunicorn_conf import (
    child_exit,
    graceful_timeout,
    post_worker_init,
    timeout,
    when_ready,
)

__all__ = ["child_exit", "graceful_timeout", "post_worker_init", "timeout", "when_ready"]
