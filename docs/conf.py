"""Sphinx configuration of the baseplate_events site (``make docs``).

The build runs with ``-W --keep-going -n``: every warning, a reference that
resolves nowhere included, fails it, so CI catches a renamed function or key.
No intersphinx: the build must work without network access, so references to
other projects' objects are listed in ``nitpick_ignore_regex`` below.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
# settings_directive.py, beside this file: ``.. settings::`` renders the
# settings tables as confval entries.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

project = "baseplate_events"
author = "the baseplate_events authors"
copyright = "the baseplate_events authors"  # noqa: A001 - Sphinx's name
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "settings_directive",
]

html_theme = "furo"
html_title = "baseplate_events"
exclude_patterns = ["_build"]
templates_path: list = []

# Type hints go into the parameter descriptions, where they read as prose.
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Other projects' objects (no intersphinx offline) and typing's internals.
nitpick_ignore_regex = [
    ("py:class", r"(flask|pyramid|thrift|posix_ipc|webob|werkzeug)\..*"),
    ("py:exc", r"(flask|pyramid)\..*"),
    ("py:class", r"(Flask|Configurator|Registry|Request|Response|Handler)"),
    ("py:class", r"(.*\.)?(T|S|F)"),  # type variables
    ("py:obj", r"(.*\.)?(T|S|F)"),
    ("py:mod", r"posix_ipc"),
    ("py:class", r"(datetime|enum|uuid|typing|collections\.abc|contextlib|pathlib)\..*"),
    ("py:class", r"_io\..*|io\..*"),
    ("py:class", r"(Exception|ValueError|TypeError|OSError|BaseException)"),
    ("py:class", r"(ContextManager|Iterator|Generic|Protocol|NamedTuple)"),
    ("py:func", r"hmac\..*"),
    # The collector's internal modules and helper types, named in the intake's
    # and the sinks' docstrings but not part of the documented API.
    ("py:mod", r"baseplate_events\.collector\.(service\.handler|decode\.(documents|batches|schema))"),
    ("py:class", r"(baseplate_events\.collector\.service\.intake\.)?(Headers|StructShape)"),
]

# Attributes set in ``__init__`` that autodoc does not list, and one short
# reference inside the runtime's request events (a short name autodoc cannot resolve).
nitpick_ignore = [
    ("py:attr", "max_messages"),
    ("py:attr", "max_message_size"),
    ("py:class", "EventQueue"),
]


def setup(app):  # type: ignore[no-untyped-def]
    """``.. metric:: NAME`` and ``:metric:`NAME```: each metric in the index."""
    app.add_object_type(
        "metric", "metric", objname="metric", indextemplate="pair: %s; metric"
    )
