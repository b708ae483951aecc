"""The quick start's files (examples/quickstart) do what the README says, in-process."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
import webtest

from baseplate_events.testing import capture_events

QUICKSTART = Path(__file__).resolve().parent.parent.parent / "examples" / "quickstart"


@pytest.fixture
def quickstart() -> Iterator[None]:
    """examples/quickstart on sys.path, as it is for ``python app.py`` run there."""
    sys.path.insert(0, str(QUICKSTART))
    yield
    sys.path.remove(str(QUICKSTART))
    loaded = [n for n in sys.modules if n.startswith(("shop_events", "quickstart_"))]
    for name in loaded:
        del sys.modules[name]


def _load(filename: str) -> ModuleType:
    name = "quickstart_" + filename[:-3]
    spec = importlib.util.spec_from_file_location(name, QUICKSTART / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Pyramid's Configurator looks its caller up there
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_the_schema(quickstart: None) -> None:
    """shop_events/ holds exactly the fields shop.thrift declares (ids, names)."""
    from shop_events.ttypes import CartEvent

    schema = (QUICKSTART / "shop.thrift").read_text()
    declared = re.findall(r"^\s+(\d+): optional \w+ (\w+);", schema, re.MULTILINE)
    generated = [(str(entry[0]), entry[2]) for entry in CartEvent.thrift_spec if entry]
    assert declared == generated


def test_pyramid_view_puts_a_filled_in_cart_event(quickstart: None) -> None:
    """POST /cart answers the item and puts one CartEvent with source, time and uuid filled."""
    app = webtest.TestApp(_load("app.py").make_app())
    with capture_events() as captured:
        answer = app.post("/cart", {"item": "42"})
    (event,) = captured.events
    assert {"added": 42} == answer.json
    assert ("shop", "add", "cart", 42, 1) == (
        event.source, event.action, event.noun, event.item_id, event.quantity
    )
    assert isinstance(event.client_timestamp, int) and len(event.uuid) == 36


def test_flask_view_puts_the_same_event(quickstart: None) -> None:
    """The Flask variant's POST /cart puts the same CartEvent as the Pyramid one."""
    app = _load("flask_app.py").app
    with capture_events() as captured:
        answer = app.test_client().post("/cart", data={"item": "42"})
    (event,) = captured.events
    assert {"added": 42} == answer.get_json()
    assert ("shop", "add", "cart", 42, 1) == (
        event.source, event.action, event.noun, event.item_id, event.quantity
    )
    assert isinstance(event.client_timestamp, int) and len(event.uuid) == 36
