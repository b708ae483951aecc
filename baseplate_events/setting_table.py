"""Tables of settings: each setting of a component declared once.

A :class:`Setting` holds a setting's name, its parser (a validator from
:mod:`baseplate_events.validation`), its default and one line of help. A
component's :class:`SettingTable` (the apps' :data:`baseplate_events.runtime.settings.APP_SETTINGS`,
the publisher's :data:`publisher.config.table.PUBLISHER_SETTINGS`, the collector's
:data:`baseplate_events.collector.service.settings.COLLECTOR_SETTINGS`) is what its
parser reads, what its unknown-key check compares against (with a "did you
mean" from :meth:`SettingTable.hint`), and what the docs' ``confval`` entries
are generated from at build time (``docs/settings_directive.py``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

__all__ = ["Setting", "SettingTable"]


@dataclass(frozen=True)
class Setting:
    """One setting: how it is spelt, parsed, defaulted and described."""

    #: The name as users write it, before any framework prefix (``queue_name``,
    #: ``collector.hostname``, ``jsonl.fsync``).
    name: str
    #: ``parse(full_key, value) -> typed value``; raises ConfigError naming the key.
    parse: Callable[[str, Any], Any]
    #: The value when the setting is not given (None: unset, or worked out at
    #: parse time, which :attr:`default_text` then describes).
    default: Any
    #: One line of help.
    help: str
    #: The kind of value, as the docs name it (``seconds``, ``octal mode``).
    kind: str
    #: The docs' default where the value alone does not say it (``required``,
    #: ``unset (off)``, a default worked out at start-up); else ``default`` as written.
    default_text: Optional[str] = None
    #: The docs' section the setting is listed in (``collector``, ``spool``...).
    group: str = ""
    #: The attribute of the parsed settings object, where it differs from ``name``.
    field: Optional[str] = None
    #: For settings also given as Python values (Flask's ``app.config``): the kind
    #: and the default as Python spells them.
    python_kind: Optional[str] = None
    python_default: Optional[str] = None

    @property
    def attribute(self) -> str:
        """The parsed object's attribute holding this setting."""
        return self.field or self.name

    def doc_default(self, python: bool = False) -> str:
        """The docs' ``:default:`` text."""
        if python:
            if self.python_default is not None:
                return self.python_default
            return f"``{self.default!r}``".replace("'", '"')
        if self.default_text is not None:
            return self.default_text
        return f"``{_ini_text(self.default)}``"

    def doc_kind(self, python: bool = False) -> str:
        """The docs' ``:type:`` text."""
        if python and self.python_kind is not None:
            return self.python_kind
        return self.kind


def _ini_text(value: Any) -> str:
    """How a default is written in an INI file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class SettingTable:
    """A component's settings, in the order they are parsed and documented."""

    def __init__(self, component: str, settings: Iterable[Setting],
                 *, patterns: Tuple[str, ...] = ()) -> None:
        #: ``apps``, ``publisher`` or ``collector``: what the docs directive names.
        self.component = component
        self.settings: Tuple[Setting, ...] = tuple(settings)
        #: Families of keys accepted beyond the named ones, as the docs write them
        #: (``kafka.producer.<librdkafka option>``).
        self.patterns = patterns
        self._by_name: Dict[str, Setting] = {s.name: s for s in self.settings}
        if len(self._by_name) != len(self.settings):
            raise ValueError(f"{component}: a setting is declared twice")

    def __repr__(self) -> str:
        return f"<SettingTable {self.component}: {len(self.settings)} settings>"

    def __iter__(self) -> Iterator[Setting]:
        return iter(self.settings)

    def __len__(self) -> int:
        return len(self.settings)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Setting:
        return self._by_name[name]

    @property
    def names(self) -> Tuple[str, ...]:
        """Every setting's name, in table order."""
        return tuple(self._by_name)

    def under(self, prefix: str) -> Tuple[Setting, ...]:
        """The settings whose names start with ``prefix`` (a sink's ``jsonl.``)."""
        return tuple(s for s in self.settings if s.name.startswith(prefix))

    def hint(self, key: str, key_of: Callable[[str], str] = str, *, under: str = "") -> str:
        """`` (did you mean collector.hostname?)`` for a misspelt ``key``, or ``""``.

        :param key_of: how the component spells a setting's full key
            (``events.`` + name in Pyramid).
        :param under: compare only the settings under this prefix, without it
            (a sink's options: ``jsonl.``), so that the shared prefix alone
            does not make a name look close.
        """
        known = sorted(key_of(s.name)[len(under):] for s in self.under(under))
        close = difflib.get_close_matches(key[len(under):], known, n=1)
        return f" (did you mean {under}{close[0]}?)" if close else ""
