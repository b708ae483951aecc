"""Publisher modules moved into folders keep the logger names that logging configs may name."""
import importlib

import pytest


@pytest.mark.parametrize("module, name", [
    ("publisher.daemon", "publisher.loop"),
    ("publisher.intake.landing", "publisher.landing"),
    ("publisher.intake.sources", "publisher.loop"),
    ("publisher.spool.store", "publisher.spool"),
    ("publisher.spool.writer", "publisher.spool"),
    ("publisher.spool.damage", "publisher.spool"),
    ("publisher.spool.recovery", "publisher.spool_recovery"),
    ("publisher.spool.upgrade", "publisher.upgrade"),
    ("publisher.send.delivery", "publisher.delivery"),
    ("publisher.send.transport", "publisher.transport"),
    ("publisher.send.replay", "publisher.replay"),
    ("publisher.metrics.counters", "publisher.metrics"),
    ("publisher.metrics.health", "publisher.health"),
])
def test_a_moved_module_logs_under_its_old_name(module: str, name: str) -> None:
    """A module moved into a folder logs under the logger name it had before the move."""
    assert name == importlib.import_module(module).logger.name
