"""The one set of value validators behind every configuration this project reads.

Every component parses its configuration once, at start-up, with these: the
apps' settings (:mod:`baseplate_events.runtime.settings`: Pyramid's ``events.*``,
Flask's ``EVENTS_*``), the publisher's INI section (:mod:`publisher.config.parse`)
and the collector's settings and sink options
(:mod:`baseplate_events.collector.service.settings`). So a boolean, a size, a number
of seconds, a permission mode or a ``host:port`` means the same everywhere,
and a boolean takes the same words (:data:`TRUE_WORDS`, :data:`FALSE_WORDS`).

Where a component's errors have always said it in their own words (the
collector's ``expected a positive integer``), the validator takes that
wording as ``expected``; what it accepts stays the same.

Each validator is ``validator(key, value) -> typed value``: ``key`` is the full
key as the user wrote it, named in the :class:`~baseplate_events.ConfigError`
(``events.max_messages: expected an integer, got 'lots'``); ``value`` is a
string (an INI file, the environment) or, from a Python mapping such as
Flask's ``app.config``, a Python value. A missing value is the caller's
business (a default, or "required but not set").
"""
from __future__ import annotations

import ipaddress
import math
from typing import Any, Callable, Optional, Sequence, Tuple

from .errors import ConfigError

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "boolean",
    "choice",
    "host_port",
    "int_in",
    "mode",
    "port",
    "positive_int",
    "positive_seconds",
    "seconds",
    "string",
]

#: Words read as true, whatever their case: the union of what the apps'
#: settings and the publisher's INI accepted before they shared this module.
TRUE_WORDS = frozenset(("true", "yes", "on", "1", "t", "y"))
#: Words read as false; an empty string is false (``events.autofill =``).
FALSE_WORDS = frozenset(("false", "no", "off", "0", "f", "n", ""))


def string(key: str, value: Any) -> str:
    """A string, stripped.

    :raises ConfigError: not a string.
    """
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    return value.strip()


def boolean(key: str, value: Any, *, expected: str = "true or false") -> bool:
    """A bool, or one of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` in any case.

    :param expected: how the error names the usual words: the apps' settings
        say ``true or false``, the publisher's switches ``on or off``.
    :raises ConfigError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ConfigError(key, f"expected {expected}, got {value!r}")


def _integer(value: Any) -> Optional[int]:
    """An int (never a bool) or a string of one; else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def positive_int(key: str, value: Any, *, expected: Optional[str] = None) -> int:
    """An integer of at least 1.

    :param expected: one wording for every refusal (``a positive integer``).
    :raises ConfigError: not an integer, or below 1.
    """
    number = _integer(value)
    if expected is not None and (number is None or number < 1):
        raise ConfigError(key, f"expected {expected}, got {value!r}")
    if number is None:
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if number < 1:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")
    return number


def int_in(low: int, high: int, *, expected: Optional[str] = None) -> Callable[[str, Any], int]:
    """A validator of integers from ``low`` to ``high``.

    :param expected: what the error says is expected (default: ``an integer
        from LOW to HIGH``).
    """
    wanted = expected or f"an integer from {low} to {high}"

    def check(key: str, value: Any) -> int:
        number = _integer(value)
        if number is None or not low <= number <= high:
            raise ConfigError(key, f"expected {wanted}, got {value!r}")
        return number

    return check


def _number(value: Any) -> Optional[float]:
    """A float from an int or float (never a bool) or a string of one; else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def seconds(key: str, value: Any) -> float:
    """A finite number of seconds, 0 or more.

    :raises ConfigError: not a finite number, or negative.
    """
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise ConfigError(key, f"expected a number of seconds, got {value!r}")
    if number < 0:
        raise ConfigError(key, f"expected seconds >= 0, got {value!r}")
    return number


def positive_seconds(key: str, value: Any, *, expected: Optional[str] = None) -> float:
    """A finite number of seconds above 0.

    :param expected: the wording for a number that is not finite and above 0
        (``a positive number of seconds``).
    :raises ConfigError: not a finite number, or 0 or less.
    """
    if expected is not None:
        number = _number(value)
        if number is None:
            raise ConfigError(key, f"expected a number of seconds, got {value!r}")
        if not math.isfinite(number) or number <= 0:
            raise ConfigError(key, f"expected {expected}, got {value!r}")
        return number
    number = seconds(key, value)
    if number == 0:
        raise ConfigError(key, f"expected a number of seconds > 0, got {value!r}")
    return number


def mode(key: str, value: Any, *, owner_read_write: bool = False) -> int:
    """Permission bits: an octal string (``"0660"``, ``"660"``) or an int (``0o660``).

    :param owner_read_write: refuse a mode without the owner's read and write
        (a queue the app cannot write to is no use to it).
    :raises ConfigError: not an octal mode from 0000 to 0777, or without
        ``0600`` when ``owner_read_write``.
    """
    bits: Optional[int] = None
    if isinstance(value, int) and not isinstance(value, bool):
        bits = value
    elif isinstance(value, str):
        try:
            bits = int(value.strip(), 8)
        except ValueError:
            bits = None
    if bits is None or not 0 <= bits <= 0o777:
        raise ConfigError(key, f"expected an octal mode like 0600 or 0660, got {value!r}")
    if owner_read_write and bits & 0o600 != 0o600:
        raise ConfigError(key, f"the owner needs read and write (0600), got {value!r}")
    return bits


def port(key: str, text: str, *, lowest: int = 1) -> int:
    """A TCP/UDP port number from ``lowest`` (0: any free port) to 65535.

    :raises ConfigError: not such a number.
    """
    if not text.isdigit() or not lowest <= int(text) < 65536:
        raise ConfigError(key, f"port must be a number from {lowest} to 65535, got {text!r}")
    return int(text)


def host_port(
    key: str, value: Any, *, lowest_port: int = 1, what: str = "host:port"
) -> Tuple[str, int]:
    """``host:port`` (``[::1]:8125`` for IPv6) as ``(host, port)``, brackets stripped.

    :param lowest_port: 0 for an address to listen on, where 0 picks a free port.
    :param what: how the error names the form, e.g. ``host:port to listen on``.
    :raises ConfigError: no host or no port, or a port out of range.
    """
    text = string(key, value)
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or any(c.isspace() for c in host):
        raise ConfigError(key, f"expected {what}, got {value!r}")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1]
        if not (host.startswith("[") and host.endswith("]") and _is_ipv6(inner)):
            raise ConfigError(
                key, f"expected {what} with an IPv6 address in brackets ([::1]:8125), "
                f"got {value!r}")
        host = inner
    return host, port(key, port_text, lowest=lowest_port)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def choice(
    key: str, value: Any, choices: Sequence[str], *, quoted: bool = False,
    any_case: bool = False, one_of: bool = False,
) -> str:
    """One of ``choices``.

    :param quoted: name the choices in the error as Python strings (``'raise' or
        'log'``), as the apps' settings do; else bare (``always, interval or never``).
    :param any_case: accept the choices in any case, as the apps' settings do.
    :param one_of: name them ``one of sqlite, jsonl, kafka``, as the collector does.
    :raises ConfigError: not one of them.
    """
    word = value.strip() if isinstance(value, str) else value
    if any_case and isinstance(word, str):
        word = word.lower()
    if word not in choices:
        names = [repr(c) if quoted else c for c in choices]
        if one_of:
            options = "one of " + ", ".join(names)
        elif len(names) == 1:
            options = names[0]
        else:
            options = ", ".join(names[:-1]) + " or " + names[-1]
        raise ConfigError(key, f"expected {options}, got {value!r}")
    return str(word)
