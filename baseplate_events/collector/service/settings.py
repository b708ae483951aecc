"""The collector's settings, parsed once at start-up into a frozen, typed object.

``make_app(settings)`` takes a flat mapping; values may be strings (an INI
file, a command line) or Python values. Every key, the sinks' options
(``<sink>.<option>``) included, is declared once in :data:`COLLECTOR_SETTINGS`
with its parser (from :mod:`baseplate_events.validation`), default and help.

A bad value raises :class:`~baseplate_events.ConfigError` naming the key, e.g.
``max_body: expected a positive integer, got 'lots'``.
"""
from __future__ import annotations

import base64
import binascii
import configparser
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from ... import validation
from ...errors import ConfigError
from ...setting_table import Setting, SettingTable
from .intake import DEFAULT_MAX_BODY, DEFAULT_REPLAY_WINDOW

__all__ = [
    "COLLECTOR_SETTINGS",
    "SINKS",
    "CollectorSettings",
    "keys_from_publisher_config",
    "parse_settings",
    "sink_options",
]

#: the sinks a collector can write to
SINKS = ("sqlite", "jsonl", "kafka")


def parse_float(key: str, value: Any) -> float:
    """A positive, finite number of seconds."""
    return validation.positive_seconds(key, value, expected="a positive number of seconds")


def parse_positive_int(key: str, value: Any) -> int:
    """An integer of at least 1."""
    return validation.positive_int(key, value, expected="a positive integer")


def _sink(key: str, value: Any) -> str:
    return validation.choice(key, str(value), SINKS, one_of=True)


def _text(key: str, value: Any) -> str:
    return str(value).strip()


def _optional_text(key: str, value: Any) -> Optional[str]:
    return str(value) if value not in (None, "") else None


_field_id = validation.int_in(-(2**15), 2**15 - 1, expected="a Thrift field id (an i16)")


def _kafka_timeout(key: str, value: Any) -> int:
    return validation.positive_int(key, value, expected="a positive integer (milliseconds)")


#: the file modes ``jsonl.mode`` may give: private, group-readable, group-writable
JSONL_MODES = (0o600, 0o640, 0o660)


def parse_jsonl_mode(key: str, value: Any) -> int:
    """``jsonl.mode``: ``0600``, ``0640`` or ``0660`` (octal)."""
    text = str(value).strip()
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if mode not in JSONL_MODES:
        raise ConfigError(key, f"expected 0600, 0640 or 0660 (the files' mode: "
                               f"private, read by a group, moved by a group), "
                               f"got {value!r}")
    return mode


def _topic(key: str, value: Any) -> str:
    topic = str(value).strip()
    if not topic:
        raise ConfigError(key, "expected a topic name, got an empty value")
    return topic


def _keys_setting(key: str, value: Any) -> Dict[str, bytes]:
    return _keys(value)


def _topic_setting(stream: str) -> Setting:
    return Setting(f"kafka.topic.{stream}", _topic, f"events.{stream}",
                   f"The topic of the ``{stream}`` stream.", "topic name", group="kafka")


#: Every setting of the collector, the sinks' options (``<sink>.<option>``) included.
COLLECTOR_SETTINGS = SettingTable("collector", [
    Setting("keys", _keys_setting, None,
            "The signing keys (space or comma separated).",
            "``NAME=BASE64 NAME2=BASE64``, or ``{name: raw secret}``",
            default_text="none (at least one key, here or from publisher_config)", group="service"),
    Setting("publisher_config", _text, None,
            "An INI file whose ``[event-publisher:*]`` sections' keys (``key.name`` with "
            "``key.secret`` or ``key.secret_file``) are added.",
            "path", default_text="unset", group="service"),
    Setting("sink", _sink, "sqlite",
            "Where accepted events go; ``<sink>.<option>`` keys configure it.",
            "``sqlite``, ``jsonl`` or ``kafka``", group="service"),
    Setting("replay_window", parse_float, DEFAULT_REPLAY_WINDOW,
            "How far a request's ``Date`` may be off.", "seconds", group="service"),
    Setting("max_body", parse_positive_int, DEFAULT_MAX_BODY,
            "The largest body, compressed or decompressed.", "bytes", group="service"),
    Setting("schema", _optional_text, None,
            "The generated Thrift class of your v2 events (:ref:`any-schema`).",
            "``module:Struct``", default_text="unset", group="service"),
    Setting("uuid_field", _field_id, None,
            "The top-level field holding each v2 event's uuid (:ref:`any-schema`).",
            "Thrift field id", default_text="unset", group="service"),
    Setting("retry_after", parse_positive_int, 5,
            "What a 503 puts in ``Retry-After``.", "seconds", group="service"),
    Setting("sqlite.path", _text, None,
            "The SQLite database file.", "path",
            default_text="``$STATE_DIRECTORY/events.sqlite3`` under systemd, else required",
            group="sqlite"),
    Setting("sqlite.busy_timeout", parse_float, 2.5,
            "How long a batch waits for the database (another worker's write, a lock).",
            "seconds", group="sqlite"),
    Setting("jsonl.directory", _text, None,
            "Where the JSONL files are written.", "directory",
            default_text="required with sink = jsonl", group="jsonl"),
    Setting("jsonl.max_bytes", parse_positive_int, 64 * 1024 * 1024,
            "A file is rotated when it reaches this size.", "bytes",
            default_text="``67108864`` (64 MiB)", group="jsonl"),
    Setting("jsonl.max_seconds", parse_float, 300.0,
            "A file older than this is rotated at the next batch or readiness probe.",
            "seconds", group="jsonl"),
    Setting("jsonl.fsync", validation.boolean, True,
            "``fsync`` each batch before the 2xx.", "boolean", group="jsonl"),
    Setting("jsonl.mode", parse_jsonl_mode, 0o600,
            "The files' mode: private, read by a group, or moved by a group.",
            "``0600``, ``0640`` or ``0660``", default_text="``0600``", group="jsonl"),
    Setting("jsonl.timeout", parse_float, 2.5,
            "How long a batch waits for another thread's write before the answer is 503.",
            "seconds", group="jsonl"),
    Setting("kafka.bootstrap_servers", _text, None,
            "The brokers: ``host:port[,host:port...]``.", "``host:port[,host:port...]``",
            default_text="required with sink = kafka", group="kafka"),
    Setting("kafka.message_timeout_ms", _kafka_timeout, 2000,
            "How long a batch may wait for the broker before the collector answers 503.",
            "milliseconds", group="kafka"),
    *(_topic_setting(stream) for stream in ("v1", "v2", "v2j")),
], patterns=("kafka.producer.<librdkafka option>",))

#: The settings that are not a sink's options.
_TOP_LEVEL = tuple(s.name for s in COLLECTOR_SETTINGS if "." not in s.name)


@dataclass(frozen=True)
class CollectorSettings:
    """Everything the collector needs, validated."""

    #: key name → raw secret
    keys: Mapping[str, bytes]
    sink: str = COLLECTOR_SETTINGS["sink"].default
    #: the chosen sink's options, without the ``<sink>.`` prefix
    sink_options: Mapping[str, str] = field(default_factory=dict)
    replay_window: float = DEFAULT_REPLAY_WINDOW
    max_body: int = DEFAULT_MAX_BODY
    schema: Optional[str] = None
    uuid_field: Optional[int] = None
    retry_after: int = COLLECTOR_SETTINGS["retry_after"].default


def parse_settings(raw: Mapping[str, Any], keys_needed: bool = True) -> CollectorSettings:
    """Validate a flat settings mapping.

    :param keys_needed: False for a command that only reads what a collector
        stored (``baseplate-events-tail``): the keys and ``publisher_config``
        are then neither read nor required, so that it needs no secret.
    :raises ConfigError: a value is invalid, a key unknown, or no key is given.
    """
    sink = _sink("sink", raw.get("sink", COLLECTOR_SETTINGS["sink"].default)).strip()
    unknown = sorted(k for k in raw if k not in _TOP_LEVEL and k.split(".", 1)[0] not in SINKS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting{COLLECTOR_SETTINGS.hint(unknown[0])}; "
                                      f"known: {', '.join(sorted(_TOP_LEVEL))} "
                                      "and <sink>.<option>")
    values = {name: _read(name, raw.get(name)) for name in _TOP_LEVEL if name != "sink"}
    keys: Dict[str, bytes] = dict(values["keys"] or {}) if keys_needed else {}
    if values["publisher_config"] and keys_needed:
        keys.update(keys_from_publisher_config(values["publisher_config"]))
    if not keys and keys_needed:
        raise ConfigError("keys", "no signing keys: give keys (NAME=BASE64) or publisher_config")
    options = {k.split(".", 1)[1]: str(v) for k, v in raw.items() if k.startswith(sink + ".")}
    return CollectorSettings(
        keys=keys,
        sink=sink,
        sink_options=options,
        replay_window=values["replay_window"],
        max_body=values["max_body"],
        schema=values["schema"],
        uuid_field=values["uuid_field"],
        retry_after=values["retry_after"],
    )


def _read(name: str, value: Any) -> Any:
    """The setting ``name`` parsed, or its default when ``value`` is None or empty."""
    setting = COLLECTOR_SETTINGS[name]
    if value is None or value == "":
        return setting.default
    return setting.parse(name, value)


def sink_options(sink: str, options: Mapping[str, str]) -> Dict[str, Any]:
    """A sink's options (prefix stripped, as :func:`~.sinks.create_sink` gives them) parsed.

    Every option of the sink in :data:`COLLECTOR_SETTINGS` is in the answer,
    by its name without the prefix: the given value parsed, or the default
    (None for a required one, which the sink names in its own error). Options
    under one of the table's patterns (``kafka.producer.*``) are left to the sink.

    :raises ConfigError: an option is unknown or invalid.
    """
    prefix = sink + "."
    own = COLLECTOR_SETTINGS.under(prefix)
    patterns = [p for p in COLLECTOR_SETTINGS.patterns if p.startswith(prefix)]
    free = tuple(p.split("<", 1)[0][len(prefix):] for p in patterns)
    names = {s.name[len(prefix):] for s in own}
    unknown = [k for k in options if k not in names and not (free and k.startswith(free))]
    if unknown:
        key = prefix + sorted(unknown)[0]
        known = ", ".join(s.name for s in own) + "".join(f" and {p}" for p in patterns)
        hint = COLLECTOR_SETTINGS.hint(key, under=prefix)
        raise ConfigError(key, f"unknown option{hint}; known: {known}")
    return {s.name[len(prefix):]: _read(s.name, options.get(s.name[len(prefix):])) for s in own}


def parse_key(text: str) -> "tuple[str, bytes]":
    """``NAME=BASE64`` into the name and the raw secret (never echoing the secret)."""
    name, sep, secret = text.strip().partition("=")
    if not sep or not name:
        raise ConfigError("keys", "expected NAME=BASE64SECRET (a key's name, '=', its secret "
                                  "in base64)")
    try:
        decoded = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("keys", f"the secret of key {name!r} is not base64") from None
    if not decoded:
        raise ConfigError("keys", f"the secret of key {name!r} is empty")
    return name, decoded


def _keys(value: Any) -> Dict[str, bytes]:
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(name): bytes(secret) for name, secret in value.items()}
    return dict(parse_key(item) for item in re.split(r"[\s,]+", str(value)) if item)


def keys_from_publisher_config(path: str) -> Dict[str, bytes]:
    """The keys of every ``[event-publisher:*]`` section of an INI file.

    ``key.secret`` (base64) or ``key.secret_file`` (a file holding it), as the
    publisher reads them; ``${VAR}`` is expanded from the environment.

    :raises ConfigError: the file cannot be read or a secret is not base64.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        if not parser.read(path, encoding="utf-8"):
            raise ConfigError("publisher_config", f"cannot read {path}")
    except configparser.Error as exc:
        raise ConfigError("publisher_config", f"{path} is not an INI file: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("publisher_config", f"{path} is not UTF-8 text (byte "
                          f"0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as "
                          f"UTF-8") from None
    keys: Dict[str, bytes] = {}
    for section in parser.sections():
        values = parser[section]
        if not section.startswith("event-publisher:") or "key.name" not in values:
            continue
        secret = os.path.expandvars(values.get("key.secret", ""))
        if not secret and values.get("key.secret_file"):
            secret_path = os.path.expandvars(values["key.secret_file"])
            try:
                with open(secret_path, encoding="utf-8") as f:
                    secret = f.read().strip()
            except OSError as exc:
                raise ConfigError(f"[{section}] key.secret_file",
                                  f"cannot read {secret_path}: {exc.strerror}") from None
            except UnicodeDecodeError as exc:
                raise ConfigError(f"[{section}] key.secret_file",
                                  f"{secret_path} is not UTF-8 text (byte "
                                  f"0x{exc.object[exc.start]:02x} at offset {exc.start}); it "
                                  f"holds the key in base64") from None
        name = os.path.expandvars(values["key.name"])
        keys.update([parse_key(f"{name}={secret}")])
    return keys
