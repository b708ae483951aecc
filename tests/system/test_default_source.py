"""The default ``source`` of an app started as a script: its file name, never ``__main__``.

Each case runs a real app in a subprocess, the way a user starts it, puts one
event under :func:`~baseplate_events.testing.capture_events` and prints the
event's ``source`` and any warning the integration logged.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

pytestmark = pytest.mark.system

FLASK_APP = '''
import logging
from flask import Flask, g
from baseplate_events.flask import EventsExtension
from baseplate_events.testing import capture_events
from demo_app.event_schemas.event.ttypes import Event

logging.basicConfig(format="%(levelname)s %(message)s")
app = Flask(__name__)
app.config.update(EVENTS_MAX_MESSAGES=10, EVENTS_MAX_MESSAGE_SIZE=8192)  # stock kernel sizes
EventsExtension(app)

@app.route("/")
def index():
    g.events_v2.put(Event(action="view"))
    return "ok"

with capture_events() as captured:
    app.test_client().get("/")
print(captured.events[0].source)
'''

PYRAMID_APP = '''
import logging
from pyramid.config import Configurator
from pyramid.response import Response
from webtest import TestApp
from baseplate_events.testing import capture_events
from demo_app.event_schemas.event.ttypes import Event

logging.basicConfig(format="%(levelname)s %(message)s")

def index(request):
    request.events_v2.put(Event(action="view"))
    return Response("ok")

with Configurator(settings={"events.max_messages": "10",
                            "events.max_message_size": "8192"}) as config:
    config.include("baseplate_events.pyramid")
    config.add_route("index", "/")
    config.add_view(index, route_name="index")
    app = config.make_wsgi_app()

with capture_events() as captured:
    TestApp(app).get("/")
print(captured.events[0].source)
'''


def run(argv: List[str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("framework, program", [("flask", FLASK_APP), ("pyramid", PYRAMID_APP)])
def test_python_app_py_puts_the_scripts_name(framework: str, program: str, tmp_path: Path):
    """python shop_app.py: source is "shop_app", with no warning."""
    (tmp_path / "shop_app.py").write_text(program)
    result = run(["shop_app.py"], tmp_path)
    assert ("shop_app\n", "") == (result.stdout, result.stderr)


@pytest.mark.parametrize("framework, program", [("flask", FLASK_APP), ("pyramid", PYRAMID_APP)])
def test_python_m_puts_the_modules_real_name(framework: str, program: str, tmp_path: Path):
    """python -m shop.app: source is "shop.app"."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "app.py").write_text(program)
    result = run(["-m", "shop.app"], tmp_path)
    assert ("shop.app\n", "") == (result.stdout, result.stderr)


def test_without_a_file_the_warning_asks_for_the_setting(tmp_path: Path):
    """python -c (no script file): source stays "__main__" and a warning names EVENTS_SOURCE."""
    result = run(["-c", FLASK_APP], tmp_path)
    expected = ("WARNING EVENTS_SOURCE: not set, so events get the source '__main__'; "
                "set it to name this app\n")
    assert ("__main__\n", expected) == (result.stdout, result.stderr)
