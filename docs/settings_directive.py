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
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

#: Where each component's table lives.
TABLES = {
    "apps": "baseplate_events.settings:APP_SETTINGS",
    "publisher": "publisher.config:PUBLISHER_SETTINGS",
    "collector": "baseplate_events.collector.settings:COLLECTOR_SETTINGS",
}


def load_table(component: str) -> Any:
    """The :class:`~baseplate_events.setting_table.SettingTable` of ``component``."""
    module, _, name = TABLES[component].partition(":")
    return getattr(importlib.import_module(module), name)


def key_function(component: str, spelling: str) -> Callable[[str], str]:
    """How the entries spell a setting's key."""
    from baseplate_events.settings import flask_key, pyramid_key

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
        """The content's definition list: key -> more paragraphs for it."""
        if not self.content:
            return {}
        holder = nodes.container()
        self.state.nested_parse(self.content, self.content_offset, holder)
        extras: Dict[str, List[nodes.Node]] = {}
        for child in holder.children:
            if not isinstance(child, nodes.definition_list):
                raise self.error("settings: the content must be a definition list "
                                 "(a setting's key, then its extra paragraphs)")
            for item in child.children:
                term = item.next_node(nodes.term).astext()
                definition = item.next_node(nodes.definition)
                extras[term] = list(definition.children)
        return extras


def setup(app: Any) -> Dict[str, Any]:
    app.add_directive("settings", SettingsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
