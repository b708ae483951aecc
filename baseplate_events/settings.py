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
from typing import Any, Callable, Mapping, Optional, Tuple, TypeVar

from . import validation
from .errors import ConfigError
from .queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE

__all__ = [
    "ERROR_POLICIES",
    "SETTING_NAMES",
    "SINKS",
    "EventsSettings",
    "default_source",
    "flask_key",
    "parse_settings",
    "pyramid_key",
    "setting_name",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Where events go: ``queue`` (the POSIX queue, to the publisher) or ``log``
#: (one JSON log line per event, for development where there are no queues).
SINKS = ("queue", "log")

#: What a failed ``put`` does: ``raise`` the ``EventError`` into the view, or
#: ``log`` one line, count it and let the request carry on.
ERROR_POLICIES = ("raise", "log")

# "/events-" + name must fit the kernel's 255 characters for a queue name.
_MAX_NAME_LENGTH = 255 - len("/events-") - 1


@dataclass(frozen=True)
class EventsSettings:
    """Everything the request-scoped queue needs to know, already validated."""

    #: The queue is ``/events-<queue_name>``; it picks the publisher.
    queue_name: str = "v2"
    #: Auto-filled into an event's ``source`` field; ``None`` leaves it alone.
    source: Optional[str] = None
    #: Fill ``source``, ``client_timestamp`` and ``uuid`` where they are None.
    autofill: bool = True
    #: Capacity if the queue has to be created (an existing queue's own rules).
    max_messages: int = MAX_QUEUE_SIZE
    #: Largest message if the queue has to be created.
    max_message_size: int = MAX_EVENT_SIZE
    #: Seconds a put may wait for room in a full queue; 0 never blocks.
    put_timeout: float = 0.0
    #: ``raise`` or ``log``; see :data:`ERROR_POLICIES`. Set by ``events.errors``
    #: / ``EVENTS_ERRORS`` (see :data:`SETTING_NAMES`).
    error_policy: str = "raise"
    #: Hold a request's events and send them only if it succeeds.
    transactional: bool = False
    #: statsd ``host:port`` for counters of events the app could not put; off if None.
    metrics_endpoint: Optional[str] = None
    #: Prefix of those counters (``<namespace>.put.failed.<Error>``, ``….put.discarded``).
    metrics_namespace: str = "baseplate_events"
    #: Count the same losses in Prometheus (see :mod:`baseplate_events.prometheus`).
    prometheus: bool = False
    #: Permission bits of the queue: a new one gets exactly these, a wider one
    #: of ours is narrowed to them; ``0660`` shares it with a group.
    queue_mode: int = 0o600
    #: ``queue`` or ``log``; see :data:`SINKS`. The default is ``queue``
    #: wherever the platform has POSIX message queues.
    sink: str = "queue"
    #: The most events a transactional request may hold; a put past it fails.
    max_held: int = 1000


#: The setting that sets each field, where the two names differ: users write
#: ``events.errors`` / ``EVENTS_ERRORS``, which the code calls the error policy.
SETTING_NAMES = {"error_policy": "errors"}


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
    defaults = EventsSettings()

    def get(name: str) -> Any:
        return raw.get(key(name))

    def read(name: str, parse: Callable[[str, Any], T], default: T) -> T:
        """``parse`` the setting ``name``, or ``default`` when it is not set."""
        value = get(name)
        return default if value is None else parse(key(name), value)

    _warn_unknown(raw, key)
    return EventsSettings(
        queue_name=read("queue_name", _queue_name, defaults.queue_name),
        source=read("source", _optional_string, default_source),
        autofill=read("autofill", validation.boolean, defaults.autofill),
        max_messages=read("max_messages", validation.positive_int, defaults.max_messages),
        max_message_size=read(
            "max_message_size", validation.positive_int, defaults.max_message_size
        ),
        put_timeout=read("put_timeout", validation.seconds, defaults.put_timeout),
        queue_mode=read("queue_mode", _mode, defaults.queue_mode),
        sink=read("sink", _choice(SINKS), None) or default_sink(key),
        error_policy=read("errors", _choice(ERROR_POLICIES), defaults.error_policy),
        transactional=read("transactional", validation.boolean, defaults.transactional),
        max_held=read("max_held", validation.positive_int, defaults.max_held),
        metrics_endpoint=read("metrics_endpoint", _endpoint, None),
        metrics_namespace=read("metrics_namespace", validation.string, defaults.metrics_namespace),
        prometheus=_prometheus(key("prometheus"), get("prometheus")),
    )


def _prometheus(key: str, value: Any) -> bool:
    """The switch, refused up front when prometheus_client is not installed."""
    wanted = False if value is None else validation.boolean(key, value)
    if wanted and importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(
            key, "needs the prometheus_client package (pip install 'baseplate-events[prometheus]')"
        )
    return wanted


def default_sink(key: Callable[[str], str]) -> str:
    """``queue``; ``log`` where the platform has no POSIX message queues (warned once)."""
    from .message_queue import queues_supported

    if queues_supported():
        return "queue"
    logger.warning(
        "this platform has no POSIX message queues, so events go to the log "
        "(one JSON line each) instead of to a publisher; set %s = log to say "
        "so and silence this warning",
        key("sink"),
    )
    return "log"


def _endpoint(key: str, value: Any) -> Optional[str]:
    """``host:port`` of a statsd server, or None when empty."""
    text = validation.string(key, value)
    if not text:
        return None
    validation.host_port(key, value)
    return text


def _warn_unknown(raw: Mapping[str, Any], key: Callable[[str], str]) -> None:
    """Log keys under our prefix that we do not know: usually a typo."""
    known = {key(setting_name(field)) for field in EventsSettings.__dataclass_fields__}
    prefix = key("")
    for name in raw:
        if isinstance(name, str) and name.startswith(prefix) and name not in known:
            logger.warning(
                "%s: unknown setting, ignored (known: %s)", name, ", ".join(sorted(known))
            )


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
