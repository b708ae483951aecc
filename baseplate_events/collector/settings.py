"""The collector's settings, parsed once at start-up into a frozen, typed object.

``make_app(settings)`` takes a flat mapping; values may be strings (an INI
file, a command line) or Python values. The keys:

======================  ==========================================================
``keys``                the signing keys: ``{name: raw secret}``, or text
                        ``NAME=BASE64 NAME2=BASE64`` (space or comma separated)
``publisher_config``    an INI file; the keys of its ``[event-publisher:*]``
                        sections (``key.name`` with ``key.secret`` or
                        ``key.secret_file``) are added
``sink``                ``sqlite`` (default), ``jsonl`` or ``kafka``
``<sink>.<option>``     that sink's options, e.g. ``sqlite.path``,
                        ``jsonl.directory`` (see each sink's module)
``replay_window``       seconds a request's ``Date`` may be off (default 300)
``max_body``            bytes a body may have, compressed or not (default 1 MiB)
``schema``              ``module:Struct``, the user's generated Thrift class:
                        strict checks and field names for v2 events
``uuid_field``          the id of the top-level field holding each v2 event's uuid
``retry_after``         seconds put in ``Retry-After`` on a 503 (default 5)
======================  ==========================================================

A bad value raises :class:`~baseplate_events.ConfigError` naming the key, e.g.
``max_body: expected a positive integer, got 'lots'``.
"""
from __future__ import annotations

import base64
import binascii
import configparser
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from ..errors import ConfigError
from .intake import DEFAULT_MAX_BODY, DEFAULT_REPLAY_WINDOW

__all__ = ["SINKS", "CollectorSettings", "keys_from_publisher_config", "parse_settings"]

#: the sinks a collector can write to
SINKS = ("sqlite", "jsonl", "kafka")
_KNOWN = frozenset(("keys", "publisher_config", "sink", "replay_window", "max_body", "schema",
                    "uuid_field", "retry_after"))


@dataclass(frozen=True)
class CollectorSettings:
    """Everything the collector needs, validated."""

    #: key name → raw secret
    keys: Mapping[str, bytes]
    sink: str = "sqlite"
    #: the chosen sink's options, without the ``<sink>.`` prefix
    sink_options: Mapping[str, str] = field(default_factory=dict)
    replay_window: float = DEFAULT_REPLAY_WINDOW
    max_body: int = DEFAULT_MAX_BODY
    schema: Optional[str] = None
    uuid_field: Optional[int] = None
    retry_after: int = 5


def parse_settings(raw: Mapping[str, Any], keys_needed: bool = True) -> CollectorSettings:
    """Validate a flat settings mapping.

    :param keys_needed: False for a command that only reads what a collector
        stored (``baseplate-events-tail``): the keys and ``publisher_config``
        are then neither read nor required, so that it needs no secret.
    :raises ConfigError: a value is invalid, a key unknown, or no key is given.
    """
    sink = str(raw.get("sink", "sqlite")).strip()
    if sink not in SINKS:
        raise ConfigError("sink", f"expected one of {', '.join(SINKS)}, got {sink!r}")
    unknown = sorted(k for k in raw if k not in _KNOWN and k.split(".", 1)[0] not in SINKS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting; known: {', '.join(sorted(_KNOWN))} "
                                      "and <sink>.<option>")
    keys: Dict[str, bytes] = dict(_keys(raw.get("keys"))) if keys_needed else {}
    if raw.get("publisher_config") and keys_needed:
        keys.update(keys_from_publisher_config(str(raw["publisher_config"])))
    if not keys and keys_needed:
        raise ConfigError("keys", "no signing keys: give keys (NAME=BASE64) or publisher_config")
    options = {k.split(".", 1)[1]: str(v) for k, v in raw.items() if k.startswith(sink + ".")}
    uuid_field = raw.get("uuid_field")
    return CollectorSettings(
        keys=keys,
        sink=sink,
        sink_options=options,
        replay_window=parse_float("replay_window", raw.get("replay_window",
                                                           DEFAULT_REPLAY_WINDOW)),
        max_body=parse_positive_int("max_body", raw.get("max_body", DEFAULT_MAX_BODY)),
        schema=str(raw["schema"]) if raw.get("schema") else None,
        uuid_field=None if uuid_field in (None, "") else _field_id(uuid_field),
        retry_after=parse_positive_int("retry_after", raw.get("retry_after", 5)),
    )


def parse_float(key: str, value: Any) -> float:
    """A positive, finite number of seconds."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(key, f"expected a positive number of seconds, got {value!r}")
    return number


def parse_positive_int(key: str, value: Any) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", text) or int(text) <= 0:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")
    return int(text)


def _field_id(value: Any) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"-?[0-9]{1,5}", text) or not -(2**15) <= int(text) < 2**15:
        raise ConfigError("uuid_field", f"expected a Thrift field id (an i16), got {value!r}")
    return int(text)


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
