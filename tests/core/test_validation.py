"""One validator set for the apps' settings and the publisher's INI."""
from __future__ import annotations

import base64

import pytest

from baseplate_events import ConfigError
from baseplate_events.runtime.settings import parse_settings, pyramid_key
from baseplate_events.validation import FALSE_WORDS, TRUE_WORDS
from publisher.config.parse import parse_section

MINIMAL = {
    "collector.hostname": "collector.example.com",
    "key.name": "TestKey",
    "key.secret": base64.b64encode(b"hunter2").decode(),
}

#: Each side's words before they shared one parser, true then false.
APP_WORDS = ({"true", "yes", "on", "1", "t", "y"}, {"false", "no", "off", "0", "f", "n", ""})
PUBLISHER_WORDS = ({"on", "true", "yes", "1"}, {"off", "false", "no", "0"})


def test_the_words_are_the_union_of_both_sides() -> None:
    """TRUE_WORDS and FALSE_WORDS are exactly what either side accepted before."""
    expected = (APP_WORDS[0] | PUBLISHER_WORDS[0], APP_WORDS[1] | PUBLISHER_WORDS[1])
    assert expected == (set(TRUE_WORDS), set(FALSE_WORDS))


@pytest.mark.parametrize("word", sorted(TRUE_WORDS) + ["YES", "On"])
def test_every_true_word_switches_a_publisher_key_on(word: str) -> None:
    """drain.landing takes every true word in any case, the apps' t and y too."""
    raw = dict(MINIMAL, **{"drain.landing": word})
    assert True is parse_section("q", raw, environ={}).drain.landing


@pytest.mark.parametrize("word", sorted(FALSE_WORDS - {""}) + ["NO", "Off"])
def test_every_false_word_switches_a_publisher_key_off(word: str) -> None:
    """drain.landing takes every false word in any case, the apps' f and n too."""
    raw = dict(MINIMAL, **{"drain.landing": word})
    assert False is parse_section("q", raw, environ={}).drain.landing


@pytest.mark.parametrize(("word", "expected"), [("on", True), ("off", False), ("ON", True)])
def test_an_app_setting_takes_on_and_off(word: str, expected: bool) -> None:
    """events.transactional takes the publisher's on and off as well."""
    assert expected is parse_settings({"events.transactional": word}, pyramid_key).transactional


def test_a_publisher_switch_names_its_usual_words() -> None:
    """A bad publisher switch still says on or off, as it did."""
    with pytest.raises(ConfigError) as caught:
        parse_section("q", dict(MINIMAL, **{"drain.landing": "maybe"}), environ={})
    assert "drain.landing: expected on or off, got 'maybe'" == str(caught.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"events.metrics_endpoint": "statsd:99999"},
            "events.metrics_endpoint: port must be a number from 1 to 65535, got '99999'",
        ),
        ({"events.queue_mode": "0o1777"},
         "events.queue_mode: expected an octal mode like 0600 or 0660, got '0o1777'"),
    ],
)
def test_an_app_setting_words_a_shared_kind_as_the_publisher_does(
    raw: dict, message: str
) -> None:
    """A bad port or mode in the apps' settings reads as it does in the publisher's INI."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, pyramid_key)
    assert message == str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("metrics.endpoint", "statsd:99999",
         "metrics.endpoint: port must be a number from 1 to 65535, got '99999'"),
        ("queue.mode", "1777", "queue.mode: expected an octal mode like 0600 or 0660, got '1777'"),
        ("shutdown.deadline", "-1", "shutdown.deadline: expected seconds >= 0, got '-1'"),
        ("shutdown.deadline", "inf", "shutdown.deadline: expected a number of seconds, got 'inf'"),
    ],
)
def test_a_publisher_key_words_a_shared_kind_as_the_apps_do(
    key: str, value: str, message: str
) -> None:
    """A bad port, mode or number of seconds in the INI reads as it does in the apps' settings."""
    with pytest.raises(ConfigError) as caught:
        parse_section("q", dict(MINIMAL, **{key: value}), environ={})
    assert message == str(caught.value)


@pytest.mark.parametrize("port", ["²", "①"])
def test_a_port_of_a_digit_int_cannot_read_is_a_config_error(port: str) -> None:
    """A superscript or circled digit in collector.hostname's port is refused naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_section("q", dict(MINIMAL, **{"collector.hostname": "collector:" + port}),
                      environ={})
    assert (f"collector.hostname: port must be a number from 1 to 65535, got '{port}'"
            == str(caught.value))
