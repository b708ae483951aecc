"""The settings tables: each setting declared once, read from there, and documented from there.

The docs' ``confval`` entries are generated at build time by the
``.. settings::`` directive (docs/settings_directive.py); these tests fail when
the pages and the tables disagree: a setting no page renders, one rendered
twice, one written by hand beside the generated ones, extra prose under a key
that is no setting, or a ``:confval:`` reference to nothing.
"""
from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from flask import Flask

from baseplate_events.collector.service.settings import COLLECTOR_SETTINGS, sink_options
from baseplate_events.collector.sinks import jsonl
from baseplate_events.errors import ConfigError
from baseplate_events.flask import EventsExtension
from baseplate_events.setting_table import Setting, SettingTable
from baseplate_events.runtime.settings import (
    APP_SETTINGS,
    WORKED_OUT,
    flask_key,
    parse_settings,
    pyramid_key,
)
from publisher.config.parse import parse_section
from publisher.config.table import KNOWN_KEYS, PUBLISHER_SETTINGS, REQUIRED

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
sys.path.insert(0, str(DOCS))
from settings_directive import key_function  # noqa: E402

_DIRECTIVE = re.compile(r"^\.\. settings:: (\S+)\n((?:   :\S+: .*\n)*)((?:(?:   .*)?\n)*)", re.M)


def directives() -> Iterator[Tuple[str, str, str, str, List[str]]]:
    """(page, component, group, spelling, extra-prose terms) for each ``.. settings::``."""
    for page in sorted(DOCS.glob("*.rst")):
        for match in _DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            options = dict(re.findall(r"   :(\S+): (.*)", match.group(2)))
            terms = re.findall(r"^   (\S.*)$", match.group(3), re.M)
            yield (page.name, match.group(1), options.get("group", ""),
                   options.get("spelling", ""), terms)


def rendered_keys() -> Counter:
    """How often each key is rendered, as the entries spell it."""
    keys: Counter = Counter()
    for _, component, group, spelling, _ in directives():
        table = {"apps": APP_SETTINGS, "publisher": PUBLISHER_SETTINGS,
                 "collector": COLLECTOR_SETTINGS}[component]
        key = key_function(component, spelling)
        keys.update(key(s.name) for s in table if not group or s.group == group)
    return keys


def all_keys() -> List[str]:
    """Every key the docs must render: the apps' in both spellings."""
    return ([pyramid_key(s.name) for s in APP_SETTINGS] + [flask_key(s.name) for s in APP_SETTINGS]
            + list(PUBLISHER_SETTINGS.names) + list(COLLECTOR_SETTINGS.names))


def test_every_setting_is_rendered_once_in_the_docs() -> None:
    """Each table entry (the apps' in Pyramid's and Flask's spelling) has one generated entry."""
    rendered = rendered_keys()
    assert [] == [key for key in all_keys() if rendered[key] != 1]
    assert set(all_keys()) == set(rendered)


def test_no_setting_is_documented_by_hand() -> None:
    """A hand-written ``.. confval::`` of a table's key would drift from the table."""
    keys = set(all_keys())
    by_hand = [(page.name, name) for page in sorted(DOCS.glob("*.rst"))
               for name in re.findall(r"^\.\. confval:: (\S+)", page.read_text(), re.M)
               if name in keys]
    assert [] == by_hand


def test_extra_prose_is_under_a_setting_of_its_directive() -> None:
    """Every term of a directive's definition list is a key that directive renders."""
    stray = []
    for page, component, group, spelling, terms in directives():
        table = {"apps": APP_SETTINGS, "publisher": PUBLISHER_SETTINGS,
                 "collector": COLLECTOR_SETTINGS}[component]
        key = key_function(component, spelling)
        own = {key(s.name) for s in table if not group or s.group == group}
        stray += [(page, term) for term in terms if term not in own]
    assert [] == stray


def test_every_confval_reference_names_a_documented_setting() -> None:
    """``:confval:`x``` on any page names a generated or hand-written entry."""
    known = set(all_keys())
    for page in DOCS.glob("*.rst"):
        known.update(re.findall(r"^\.\. confval:: (\S+)", page.read_text(), re.M))
    dangling = sorted({(page.name, name) for page in DOCS.glob("*.rst")
                       for name in re.findall(r":confval:`([^`<]+)`", page.read_text())
                       if name not in known})
    assert [] == dangling


def test_a_table_refuses_a_setting_declared_twice() -> None:
    """Two entries of one name cannot both be the declaration."""
    entry = Setting("a", str, "", "help", "string")
    with pytest.raises(ValueError) as raised:
        SettingTable("x", [entry, entry])
    assert "x: a setting is declared twice" == str(raised.value)


def test_the_publishers_known_keys_are_its_table() -> None:
    """The unknown-key check and the parser read one list."""
    assert KNOWN_KEYS == frozenset(PUBLISHER_SETTINGS.names)
    assert 37 == len(PUBLISHER_SETTINGS)


def _field(config: Any, name: str) -> Any:
    section, _, attribute = name.rpartition(".")
    if not section:
        return getattr(config.queue, name)
    holder = {"queue": "queue"}.get(section, section)
    return getattr(getattr(config, holder), attribute)


def test_a_minimal_section_gets_every_publisher_default_from_the_table() -> None:
    """Each key left out of a section has the table's default in the parsed config."""
    config = parse_section("v2", {"collector.hostname": "c.example", "key.name": "k",
                                  "key.secret": "YQ=="})
    plain = [s for s in PUBLISHER_SETTINGS
             if s.default is not REQUIRED and s.default is not None]
    assert [(s.name, s.default) for s in plain] == [(s.name, _field(config, s.name))
                                                    for s in plain]


def test_apps_get_every_default_from_the_table() -> None:
    """Settings parsed from nothing hold the table's defaults (but the worked-out ones)."""
    parsed = parse_settings({}, pyramid_key)
    plain = [s for s in APP_SETTINGS if s.name not in WORKED_OUT]
    assert [s.default for s in plain] == [getattr(parsed, s.attribute) for s in plain]


def test_flask_config_gets_every_default_from_the_table() -> None:
    """init_app writes each setting's default into app.config, under EVENTS_<NAME>."""
    app = Flask(__name__)
    extension = EventsExtension(app)
    try:
        assert {flask_key(s.name): s.default for s in APP_SETTINGS if s.name not in WORKED_OUT} \
            == {key: app.config[key] for key in (flask_key(s.name) for s in APP_SETTINGS)
                if key not in ("EVENTS_SOURCE", "EVENTS_SINK")}
        assert "tests.core.test_setting_tables" == app.config["EVENTS_SOURCE"]
    finally:
        extension.close(app)


def test_an_unknown_app_setting_is_logged_with_the_setting_it_resembles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EVENTS_AUTOFIL is reported with EVENTS_AUTOFILL, the key it was meant to be."""
    parse_settings({"EVENTS_AUTOFIL": "no"}, flask_key)
    assert caplog.messages[0].startswith(
        "EVENTS_AUTOFIL: unknown setting, ignored (did you mean EVENTS_AUTOFILL?) (known: ")


@pytest.mark.parametrize("word, expected", [("yes", True), ("Off", False), ("0", False),
                                            ("T", True)])
def test_jsonl_fsync_takes_the_shared_boolean_words(word: str, expected: bool,
                                                     tmp_path: Path) -> None:
    """jsonl.fsync reads a boolean as every other switch does, not only true and false."""
    sink = jsonl.create({"directory": str(tmp_path), "fsync": word})
    try:
        assert expected is sink.fsync
    finally:
        sink.close()


def test_a_bad_jsonl_fsync_names_the_key() -> None:
    """A word that is no boolean is refused naming jsonl.fsync."""
    with pytest.raises(ConfigError) as raised:
        jsonl.create({"directory": "/nonexistent", "fsync": "maybe"})
    assert "jsonl.fsync: expected true or false, got 'maybe'" == str(raised.value)


def test_an_unknown_sqlite_option_is_refused_with_the_option_it_resembles() -> None:
    """sqlite.* options are checked against the table like every other sink's."""
    with pytest.raises(ConfigError) as raised:
        sink_options("sqlite", {"pth": "events.db"})
    assert ("sqlite.pth: unknown option (did you mean sqlite.path?); known: sqlite.path, "
            "sqlite.busy_timeout") == str(raised.value)


def test_sink_options_fill_in_the_tables_defaults() -> None:
    """An option left out has its table default; a required one is None for the sink to name."""
    expected: Dict[str, Any] = {"directory": None, "max_bytes": 64 << 20, "max_seconds": 300.0,
                                "fsync": True, "mode": 0o600, "timeout": 2.5}
    assert expected == sink_options("jsonl", {})


def test_the_collector_commands_flags_are_listed_from_its_parser() -> None:
    """docs/collector.rst lists the flags from build_parser(); its extra prose names real flags."""
    from baseplate_events.collector.__main__ import build_parser

    text = (DOCS / "collector.rst").read_text(encoding="utf-8")
    match = re.search(r"^\.\. command-flags:: baseplate_events\.collector\.__main__:build_parser\n"
                      r"((?:(?:   .*)?\n)*)", text, re.M)
    assert match is not None
    flags = {option for action in build_parser()._actions for option in action.option_strings}
    terms = re.findall(r"^   ``(\S+)``$", match.group(1), re.M)
    assert terms and [] == [term for term in terms if term not in flags]
