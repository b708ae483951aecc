"""The request integrations' settings, parsed once into a frozen, typed object.

Pyramid reads them from its settings under ``events.`` (``events.max_messages``)
and Flask from its config under ``EVENTS_`` (``EVENTS_MAX_MESSAGES``); both
call :func:`parse_settings` with their own spelling of the keys, at include /
``init_app`` time, so that a bad value stops the application at start-up with
a :class:`~baseplate_events.ConfigError` naming the full key, e.g.
``events.max_messages: expected an integer, got 'lots'``.

Values may be strings (an INI file, the environment) or Python values (a
``Configurator(settings=...)`` dict, ``app.config``).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .. import validation
from ..errors import ConfigError
from .event_queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE
from ..setting_table import Setting, SettingTable

__all__ = [
    "APP_SETTINGS",
    "ERROR_POLICIES",
    "SETTING_NAMES",
    "SINKS",
    "WORKED_OUT",
    "EventsSettings",
    "default_source",
    "flask_key",
    "parse_settings",
    "pyramid_key",
    "setting_name",
]

logger = logging.getLogger("baseplate_events.settings")

#: Where events go: ``queue`` (the POSIX queue, to the publisher) or ``log``
#: (one JSON log line per event, for development where there are no queues).
SINKS = ("queue", "log")

#: What a failed ``put`` does: ``raise`` the ``EventError`` into the view, or
#: ``log`` one line, count it and let the request carry on.
ERROR_POLICIES = ("raise", "log")

# "/events-" + name must fit the kernel's 255 characters for a queue name.
_MAX_NAME_LENGTH = 255 - len("/events-") - 1


def _queue_name(key: str, value: Any) -> str:
    name = validation.string(key, value)
    if not name or "/" in name or len(name) > _MAX_NAME_LENGTH:
        raise ConfigError(
            key,
            f"expected a name of 1 to {_MAX_NAME_LENGTH} characters without '/', got {value!r}",
        )
    return name


def _mode(key: str, value: Any) -> int:
    """Permission bits the app itself can read and write the queue with."""
    return validation.mode(key, value, owner_read_write=True)


def _optional_string(key: str, value: Any) -> Optional[str]:
    text = validation.string(key, value)
    return text or None


def _choice(choices: Tuple[str, ...]) -> Callable[[str, Any], str]:
    """A validator of one of ``choices``, in any case, named quoted in the error."""

    def check(key: str, value: Any) -> str:
        return validation.choice(key, value, choices, quoted=True, any_case=True)

    return check


def _endpoint(key: str, value: Any) -> Optional[str]:
    """``host:port`` of a statsd server, or None when empty."""
    text = validation.string(key, value)
    if not text:
        return None
    validation.host_port(key, value)
    return text


def _prometheus(key: str, value: Any) -> bool:
    """The switch, refused up front when prometheus_client is not installed."""
    wanted = validation.boolean(key, value)
    if wanted and importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(
            key, "needs the prometheus_client package (pip install 'baseplate-events[prometheus]')"
        )
    return wanted


#: Every setting of the apps, in the order they are read: Pyramid's
#: ``events.<name>``, Flask's ``EVENTS_<NAME>``.
APP_SETTINGS = SettingTable("apps", [
    Setting("queue_name", _queue_name, "v2",
            "The queue is ``/events-<queue_name>``; it picks the publisher (``--queue-name``).",
            "name", python_kind="str"),
    Setting("source", _optional_string, None,
            "Put into an event's ``source`` field when it is ``None``.",
            "string",
            default_text="the name of the application's root package (the one that made the "
                         "``Configurator``)",
            python_kind="str or None",
            python_default="the app's ``import_name`` (``Flask(__name__)``'s ``__name__``)"),
    Setting("autofill", validation.boolean, True,
            "Fill ``source``, ``client_timestamp`` and ``uuid`` where the struct has the field "
            "and it is ``None``.",
            "boolean", python_kind="bool"),
    Setting("max_messages", validation.positive_int, MAX_QUEUE_SIZE,
            "Capacity if the queue has to be created; an existing queue keeps its own.",
            "positive integer", python_kind="int"),
    Setting("max_message_size", validation.positive_int, MAX_EVENT_SIZE,
            "Largest event if the queue has to be created.",
            "positive integer (bytes)", python_kind="int"),
    Setting("put_timeout", validation.seconds, 0.0,
            "Seconds a ``put`` may wait for room in a full queue; ``0`` never blocks.",
            "seconds", python_kind="float"),
    Setting("queue_mode", _mode, 0o600,
            "The queue's permission bits, as the publisher's :confval:`queue.mode`.",
            "octal mode", default_text="``0600``",
            python_kind="int or octal str", python_default="``0o600``"),
    Setting("sink", _choice(SINKS), "queue",
            "Where events go.",
            "``queue`` or ``log``",
            default_text="``queue``; ``log`` where the platform has no POSIX message queues",
            python_kind="str",
            python_default='``"queue"``; ``"log"`` where the platform has no POSIX message '
                           "queues"),
    Setting("errors", _choice(ERROR_POLICIES), "raise",
            "What a failed ``put`` does: see :ref:`error-policy`.",
            "``raise`` or ``log``", field="error_policy", python_kind="str"),
    Setting("transactional", validation.boolean, False,
            "Hold the request's events and send them only if it ends without an exception and "
            "with a status below 500: see :ref:`transactional`.",
            "boolean", python_kind="bool"),
    Setting("max_held", validation.positive_int, 1000,
            "The most events a transactional request may hold.",
            "positive integer", python_kind="int"),
    Setting("metrics_endpoint", _endpoint, None,
            "A statsd server for the app-side loss counters (:ref:`app-metrics`).",
            "``host:port``", default_text="unset (off)",
            python_kind="str or None", python_default="``None`` (off)"),
    Setting("metrics_namespace", validation.string, "baseplate_events",
            "Prefix of those counters.",
            "string", python_kind="str"),
    Setting("prometheus", _prometheus, False,
            "Count the app-side losses in Prometheus too (:ref:`app-metrics`).",
            "boolean", python_kind="bool"),
])

#: Settings whose default is worked out at start-up (see :func:`parse_settings`),
#: so that Flask's ``app.config`` gets it only then.
WORKED_OUT = ("source", "sink")


def _default(name: str) -> Any:
    return APP_SETTINGS[name].default


@dataclass(frozen=True)
class EventsSettings:
    """Everything the request-scoped queue needs to know, already validated.

    Each field is a setting of :data:`APP_SETTINGS`, which holds its default
    and help.
    """

    queue_name: str = _default("queue_name")
    source: Optional[str] = _default("source")
    autofill: bool = _default("autofill")
    max_messages: int = _default("max_messages")
    max_message_size: int = _default("max_message_size")
    put_timeout: float = _default("put_timeout")
    #: ``raise`` or ``log``; see :data:`ERROR_POLICIES`. Set by ``events.errors``
    #: / ``EVENTS_ERRORS`` (see :data:`SETTING_NAMES`).
    error_policy: str = _default("errors")
    transactional: bool = _default("transactional")
    metrics_endpoint: Optional[str] = _default("metrics_endpoint")
    metrics_namespace: str = _default("metrics_namespace")
    prometheus: bool = _default("prometheus")
    queue_mode: int = _default("queue_mode")
    sink: str = _default("sink")
    max_held: int = _default("max_held")


#: The setting that sets each field, where the two names differ: users write
#: ``events.errors`` / ``EVENTS_ERRORS``, which the code calls the error policy.
SETTING_NAMES = {s.attribute: s.name for s in APP_SETTINGS if s.attribute != s.name}


def setting_name(field: str) -> str:
    """The name users give the setting behind the field ``field`` (before ``key()``)."""
    return SETTING_NAMES.get(field, field)


def default_source(module_name: str, key: str) -> str:
    """The ``source`` an app gets by default: its module's name, but never ``__main__``.

    An app started as ``python app.py`` (or ``python -m shop.app``) is the
    module ``__main__``, a name that says nothing about it. Use the script's
    file name without ``.py`` (``app``), or the module's real name (``shop.app``);
    with neither (an interactive session) keep ``__main__`` and say which
    setting to give, under ``key``.
    """
    if module_name != "__main__":
        return module_name
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name: str = spec.name
        return name[: -len(".__main__")] if name.endswith(".__main__") else name
    path = getattr(main, "__file__", None)
    if path:
        return os.path.splitext(os.path.basename(path))[0]
    logger.warning("%s: not set, so events get the source '__main__'; set it to name this app",
                   key)
    return module_name


def pyramid_key(name: str) -> str:
    """``max_messages`` -> ``events.max_messages``."""
    return "events." + name


def flask_key(name: str) -> str:
    """``max_messages`` -> ``EVENTS_MAX_MESSAGES``."""
    return "EVENTS_" + name.upper()


def parse_settings(
    raw: Mapping[str, Any],
    key: Callable[[str], str],
    *,
    default_source: Optional[str] = None,
) -> EventsSettings:
    """Read and validate the settings found in ``raw`` under the keys ``key(name)``.

    :param raw: the framework's settings or config mapping.
    :param key: how the framework spells a setting's full key
        (:func:`pyramid_key` or :func:`flask_key`).
    :param default_source: ``source`` when the mapping does not set one.
    :raises ConfigError: a value is invalid; the message names the full key.
    """
    _warn_unknown(raw, key)
    values: Dict[str, Any] = {}
    for setting in APP_SETTINGS:
        full_key = key(setting.name)
        value = raw.get(full_key)
        values[setting.attribute] = (
            setting.default if value is None else setting.parse(full_key, value)
        )
    if raw.get(key("source")) is None:
        values["source"] = default_source
    if raw.get(key("sink")) is None:
        values["sink"] = default_sink(key)
    return EventsSettings(**values)


def default_sink(key: Callable[[str], str]) -> str:
    """``queue``; ``log`` where the platform has no POSIX message queues (warned once)."""
    from ..mqueue.posix import queues_supported

    if queues_supported():
        return "queue"
    logger.warning(
        "this platform has no POSIX message queues, so events go to the log "
        "(one JSON line each) instead of to a publisher; set %s = log to say "
        "so and silence this warning",
        key("sink"),
    )
    return "log"


def _warn_unknown(raw: Mapping[str, Any], key: Callable[[str], str]) -> None:
    """Log keys under our prefix that we do not know: usually a typo."""
    known = {key(name) for name in APP_SETTINGS.names}
    prefix = key("")
    for name in raw:
        if isinstance(name, str) and name.startswith(prefix) and name not in known:
            logger.warning(
                "%s: unknown setting, ignored%s (known: %s)",
                name, APP_SETTINGS.hint(name, key), ", ".join(sorted(known)),
            )
