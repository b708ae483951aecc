"""The ``captured_events`` fixture in a user's own test run, with and without ``pytest_plugins``.

The installed package registers :mod:`baseplate_events.testing` as a pytest
plugin (entry point ``pytest11``) under the module's own name, so the fixture
is there without a line, and a conftest or test module that keeps the README's
``pytest_plugins = ["baseplate_events.testing"]`` does not stop pytest with
"Plugin already registered under a different name". Each case runs a real
pytest in a subprocess on a directory of the user's files.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

PLUGIN_LINE = 'pytest_plugins = ["baseplate_events.testing"]\n'

USER_TEST = '''
from flask import Flask, g

from baseplate_events.flask import EventsExtension
from demo_app.event_schemas.event.ttypes import Event


def test_a_view_puts_one_event(captured_events):
    app = Flask("shop")
    app.config["EVENTS_QUEUE_NAME"] = "never-opened-while-capturing"
    EventsExtension(app)

    @app.route("/buy")
    def buy():
        g.events_v2.put(Event(action="buy", noun="kettle"))
        return "ok"

    assert b"ok" == app.test_client().get("/buy").data
    assert [("buy", "shop")] == [(e.action, e.source) for e in captured_events.events]
'''

#: layout name -> the user's files
LAYOUTS: Dict[str, Dict[str, str]] = {
    "no pytest_plugins line": {"test_shop.py": USER_TEST},
    "the line in conftest.py": {"conftest.py": PLUGIN_LINE, "test_shop.py": USER_TEST},
    "the line in the test module": {"test_shop.py": PLUGIN_LINE + USER_TEST},
}


@pytest.mark.system
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_captured_events_works_in_a_users_run(layout: str, tmp_path: Path):
    """One passing test, no plugin error, whether or not the user names the plugin."""
    for name, text in LAYOUTS[layout].items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    last_line = output.strip().splitlines()[-1]
    assert (0, "1 passed") == (result.returncode, last_line.split(" in ")[0]), output
    assert "already registered" not in output
