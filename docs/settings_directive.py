"""``.. settings:: COMPONENT``: a component's ``confval`` entries, generated from its table.

Each setting of the table (:class:`baseplate_events.setting_table.SettingTable`)
becomes a ``.. confval::`` with its ``:type:``, ``:default:`` and one line of
help, so that the pages cannot drift from the code. Options:

``:group: NAME``
    only the settings of that docs section (``collector``, ``spool``...).
``:spelling: pyramid | flask``
    the apps' keys as ``events.<name>`` (default) or ``EVENTS_<NAME>``, the
    latter with Python's kinds and defaults.

The directive's content, optional, is a definition list: more prose for a
setting, under its key as the entry spells it. A term that is no setting of
the selection stops the build.

``.. command-flags:: MODULE:FUNCTION``: a command's flags, from the
``argparse`` parser ``FUNCTION()`` builds (where each flag is declared once):
a definition list of each flag, its help and its default, then the same kind
of extra prose under the flag's name (``--port``).
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable, Dict, List, Tuple

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

#: Where each component's table lives.
TABLES = {
    "apps": "baseplate_events.runtime.settings:APP_SETTINGS",
    "publisher": "publisher.config.table:PUBLISHER_SETTINGS",
    "collector": "baseplate_events.collector.service.settings:COLLECTOR_SETTINGS",
}


def load_table(component: str) -> Any:
    """The :class:`~baseplate_events.setting_table.SettingTable` of ``component``."""
    module, _, name = TABLES[component].partition(":")
    return getattr(importlib.import_module(module), name)


def key_function(component: str, spelling: str) -> Callable[[str], str]:
    """How the entries spell a setting's key."""
    from baseplate_events.runtime.settings import flask_key, pyramid_key

    if component != "apps":
        return str
    return flask_key if spelling == "flask" else pyramid_key


def render(component: str, group: str = "", spelling: str = "") -> List[str]:
    """The reStructuredText of the selected settings' ``confval`` entries."""
    table = load_table(component)
    key = key_function(component, spelling)
    python = spelling == "flask"
    lines: List[str] = []
    for setting in table:
        if group and setting.group != group:
            continue
        lines += [
            f".. confval:: {key(setting.name)}",
            f"   :type: {setting.doc_kind(python)}",
            f"   :default: {setting.doc_default(python)}",
            "",
            f"   {setting.help}",
            "",
        ]
    return lines


class SettingsDirective(SphinxDirective):
    """See the module docstring."""

    required_arguments = 1
    has_content = True
    option_spec = {
        "group": directives.unchanged,
        "spelling": lambda value: directives.choice(value, ("pyramid", "flask")),
    }

    def run(self) -> List[nodes.Node]:
        component = self.arguments[0]
        if component not in TABLES:
            raise self.error(f"settings: unknown component {component!r} "
                             f"(known: {', '.join(TABLES)})")
        group = self.options.get("group", "")
        spelling = self.options.get("spelling", "")
        extras = self._extras()
        generated = nodes.container()
        text = render(component, group, spelling)
        self.state.nested_parse(StringList(text, source=f"<settings {component}>"),
                                self.content_offset, generated)
        if not text:
            raise self.error(f"settings: no setting of {component} in group {group!r}")
        for desc in generated.findall(addnodes.desc):
            signature = desc.next_node(addnodes.desc_signature)
            name = signature.next_node(addnodes.desc_name).astext()
            content = desc.next_node(addnodes.desc_content)
            content.extend(extras.pop(name, []))
        if extras:
            raise self.error(f"settings: {', '.join(sorted(extras))}: no such setting of "
                             f"{component}" + (f" in group {group!r}" if group else ""))
        return list(generated.children)

    def _extras(self) -> Dict[str, List[nodes.Node]]:
        return parse_extras(self)


def parse_extras(directive: SphinxDirective) -> Dict[str, List[nodes.Node]]:
    """A directive's content, a definition list: key -> more paragraphs for it."""
    if not directive.content:
        return {}
    holder = nodes.container()
    directive.state.nested_parse(directive.content, directive.content_offset, holder)
    extras: Dict[str, List[nodes.Node]] = {}
    for child in holder.children:
        if not isinstance(child, nodes.definition_list):
            raise directive.error(f"{directive.name}: the content must be a definition list "
                                  "(a key, then its extra paragraphs)")
        for item in child.children:
            term = item.next_node(nodes.term).astext()
            definition = item.next_node(nodes.definition)
            extras[term] = list(definition.children)
    return extras


def flags(function: str) -> List[Tuple[str, str, str]]:
    """``(name, spelling, help)`` of each flag of the parser ``module:function`` builds."""
    module, _, name = function.partition(":")
    parser: argparse.ArgumentParser = getattr(importlib.import_module(module), name)()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:
            spelling = flag
        elif action.choices:
            spelling = f"{flag} {'|'.join(map(str, action.choices))}"
        else:
            spelling = f"{flag} {action.metavar or action.dest.upper()}"
        text = action.help or ""
        default = action.default
        if default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += f" (default {default})"
        found.append((flag, spelling, text))
    return found


class CommandFlagsDirective(SphinxDirective):
    """See the module docstring."""

    required_arguments = 1
    has_content = True

    def run(self) -> List[nodes.Node]:
        extras = parse_extras(self)
        listing = nodes.definition_list()
        for flag, spelling, text in flags(self.arguments[0]):
            definition = nodes.definition("", nodes.paragraph(text, text))
            definition.extend(extras.pop(flag, []))
            listing += nodes.definition_list_item(
                "", nodes.term("", "", nodes.literal(spelling, spelling)), definition)
        if extras:
            raise self.error(f"command-flags: {', '.join(sorted(extras))}: no such flag of "
                             f"{self.arguments[0]}")
        return [listing]


def setup(app: Any) -> Dict[str, Any]:
    app.add_directive("settings", SettingsDirective)
    app.add_directive("command-flags", CommandFlagsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
