"""Collector modules moved into service/ and decode/ log under the names users configure."""
from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("module", "logger_name"),
    [
        ("baseplate_events.collector.service.handler", "baseplate_events.collector.service"),
        ("baseplate_events.collector.service.app", "baseplate_events.collector.app"),
        ("baseplate_events.collector.decode.batches", "baseplate_events.collector.batches"),
    ],
)
def test_a_moved_collector_module_logs_under_its_old_name(module: str, logger_name: str) -> None:
    """A moved collector module's logger keeps the name it had before the move."""
    assert importlib.import_module(module).logger.name == logger_name


def test_the_documented_gunicorn_conf_gives_gunicorn_the_same_settings() -> None:
    """baseplate_events.collector.gunicorn_conf holds the hooks and timeouts gunicorn reads."""
    documented = importlib.import_module("baseplate_events.collector.gunicorn_conf")
    real = importlib.import_module("baseplate_events.collector.service.gunicorn_conf")
    names = ("timeout", "graceful_timeout", "when_ready", "child_exit", "post_worker_init")
    assert [getattr(real, n) for n in names] == [getattr(documented, n) for n in names]
