"""Kafka producers across a fork: a producer inherited by a child is never destroyed.

librdkafka's threads stay in the parent; the Kafka sink registers itself in
:data:`LIVE`, and after a fork every producer it holds is pinned.
"""
from __future__ import annotations

import ctypes
import os
import weakref
from typing import Any

from confluent_kafka import Producer

__all__ = ["LIVE", "never_destroy"]

#: every sink of this process, for the fork hook below
LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _pin_after_fork() -> None:
    """In a forked child, pin every producer it inherited (see :func:`never_destroy`).

    Whoever owns a sink may drop it in the child (the collector app makes a
    new sink there); its producer must still never be destroyed.
    """
    for sink in list(LIVE):
        never_destroy(sink.producer)


os.register_at_fork(after_in_child=_pin_after_fork)


def never_destroy(producer: Producer) -> None:
    """Keep a producer inherited across a fork alive until the process ends.

    Its librdkafka threads stayed in the parent; destroying it here (when its
    last reference goes, at the latest at interpreter exit) waits for them
    for ever: a gunicorn ``--preload`` worker then hung at shutdown until its
    graceful timeout killed it. One extra reference, never released, keeps
    the copy (a few pages) as it is.
    """
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(producer))
