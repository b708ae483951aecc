"""Every package the installed modules import is declared, so a fresh venv has it."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Set

ROOT = Path(__file__).resolve().parents[2]
#: import names whose distribution is this project itself
OURS = {"baseplate_events", "publisher", "demo_app", "event_schemas"}


def _declared_distributions() -> Set[str]:
    """The project's own requirements, core and every extra, as normalized distribution names."""
    requirements = importlib.metadata.requires("baseplate-events") or []
    return {re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            for requirement in requirements}


def _imported_top_levels(package: str) -> Set[str]:
    names: Set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        if "event_schemas" in path.parts:  # generated Thrift code: imports thrift only
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_is_a_declared_requirement() -> None:
    """No installed module imports a package that neither the core nor an extra requires."""
    distributions = importlib.metadata.packages_distributions()
    declared = _declared_distributions()
    undeclared = []
    for package in ("baseplate_events", "publisher", "demo_app"):
        for name in sorted(_imported_top_levels(package) - OURS - set(sys.stdlib_module_names)):
            owners = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
            if not owners & declared:
                undeclared.append(f"{package} imports {name} ({', '.join(sorted(owners))})")
    assert [] == undeclared
