"""Modules that moved into runtime/ and mqueue/ log under the names users configure."""
from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("module", "logger_name"),
    [
        ("baseplate_events.runtime.request_events", "baseplate_events.request_queue"),
        ("baseplate_events.runtime.settings", "baseplate_events.settings"),
        ("baseplate_events.runtime.statsd_target", "baseplate_events.statsd_target"),
        ("baseplate_events.runtime.log_sink", "baseplate_events.events"),
        ("baseplate_events.mqueue.access", "baseplate_events.queue_access"),
    ],
)
def test_a_moved_module_logs_under_its_old_name(module: str, logger_name: str) -> None:
    """A moved module's logger keeps the name it had before the move."""
    assert importlib.import_module(module).logger.name == logger_name
