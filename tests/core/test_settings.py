"""Settings of the request integrations: parsed once, typed, errors naming the full key."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict

import pytest

from baseplate_events import ConfigError
from baseplate_events.runtime.settings import EventsSettings, flask_key, parse_settings, pyramid_key


def test_defaults_when_nothing_is_set() -> None:
    """An empty mapping gives the documented defaults."""
    expected = EventsSettings(
        queue_name="v2",
        source=None,
        autofill=True,
        max_messages=10000,
        max_message_size=102400,
        put_timeout=0.0,
        error_policy="raise",
        transactional=False,
    )
    assert expected == parse_settings({}, pyramid_key)


def test_pyramid_strings_are_parsed() -> None:
    """INI strings under ``events.`` become typed values."""
    raw = {
        "events.queue_name": "orders",
        "events.source": "shop",
        "events.autofill": "false",
        "events.max_messages": "10",
        "events.max_message_size": "2048",
        "events.put_timeout": "0.25",
        "events.errors": "log",
        "events.transactional": "yes",
    }
    expected = EventsSettings("orders", "shop", False, 10, 2048, 0.25, "log", True)
    assert expected == parse_settings(raw, pyramid_key)


def test_flask_python_values_are_accepted() -> None:
    """Python values under ``EVENTS_`` are taken as they are."""
    raw = {
        "EVENTS_QUEUE_NAME": "orders",
        "EVENTS_SOURCE": "shop",
        "EVENTS_AUTOFILL": False,
        "EVENTS_MAX_MESSAGES": 10,
        "EVENTS_MAX_MESSAGE_SIZE": 2048,
        "EVENTS_PUT_TIMEOUT": 1,
        "EVENTS_ERRORS": "log",
        "EVENTS_TRANSACTIONAL": True,
    }
    expected = EventsSettings("orders", "shop", False, 10, 2048, 1.0, "log", True)
    assert expected == parse_settings(raw, flask_key)


def test_default_source_is_used_when_source_is_unset() -> None:
    """``default_source`` fills in for a missing ``source``."""
    assert "myapp" == parse_settings({}, pyramid_key, default_source="myapp").source


def test_empty_source_turns_source_autofill_off() -> None:
    """An empty ``events.source`` means no source, even with a default."""
    raw = {"events.source": ""}
    assert None is parse_settings(raw, pyramid_key, default_source="myapp").source


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        (
            {"events.max_messages": "lots"},
            pyramid_key,
            "events.max_messages: expected an integer, got 'lots'",
        ),
        (
            {"EVENTS_MAX_MESSAGES": "lots"},
            flask_key,
            "EVENTS_MAX_MESSAGES: expected an integer, got 'lots'",
        ),
        (
            {"EVENTS_MAX_MESSAGES": True},
            flask_key,
            "EVENTS_MAX_MESSAGES: expected an integer, got True",
        ),
        (
            {"events.max_message_size": "0"},
            pyramid_key,
            "events.max_message_size: expected a positive integer, got '0'",
        ),
        (
            {"events.autofill": "maybe"},
            pyramid_key,
            "events.autofill: expected true or false, got 'maybe'",
        ),
        (
            {"EVENTS_TRANSACTIONAL": 2},
            flask_key,
            "EVENTS_TRANSACTIONAL: expected true or false, got 2",
        ),
        (
            {"events.errors": "ignore"},
            pyramid_key,
            "events.errors: expected 'raise' or 'log', got 'ignore'",
        ),
        (
            {"events.put_timeout": "soon"},
            pyramid_key,
            "events.put_timeout: expected a number of seconds, got 'soon'",
        ),
        (
            {"events.put_timeout": "-1"},
            pyramid_key,
            "events.put_timeout: expected seconds >= 0, got '-1'",
        ),
        (
            {"events.queue_name": "a/b"},
            pyramid_key,
            "events.queue_name: expected a name of 1 to 246 characters without '/', got 'a/b'",
        ),
        (
            {"EVENTS_SOURCE": 42},
            flask_key,
            "EVENTS_SOURCE: expected a string, got 42",
        ),
    ],
)
def test_invalid_value_names_the_full_key(raw: Dict[str, Any], key: Any, message: str) -> None:
    """A bad value raises ConfigError whose message names the key and the value."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, key)
    assert message == str(caught.value)


def test_unknown_key_under_the_prefix_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A misspelt key is reported with the setting it resembles, not silently ignored."""
    with caplog.at_level(logging.WARNING, logger="baseplate_events.settings"):
        parse_settings({"events.max_message": "10"}, pyramid_key)
    expected = (
        "events.max_message: unknown setting, ignored (did you mean events.max_messages?) "
        "(known: events.autofill, "
        "events.errors, events.max_held, events.max_message_size, events.max_messages, "
        "events.metrics_endpoint, events.metrics_namespace, events.prometheus, "
        "events.put_timeout, events.queue_mode, events.queue_name, events.sink, "
        "events.source, events.transactional)"
    )
    assert [expected] == caplog.messages


def test_settings_are_frozen() -> None:
    """Parsed settings cannot be changed afterwards."""
    settings = parse_settings({}, pyramid_key)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.queue_name = "other"  # type: ignore[misc]
