"""Only the collector imports msgspec, which the collector extra installs."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[2]


def _importers(module: str) -> List[str]:
    """Files of baseplate_events, publisher and demo_app that import ``module``, anywhere."""
    found = []
    for package in ("baseplate_events", "publisher", "demo_app"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(name == module or name.startswith(module + ".") for name in names):
                    found.append(path.relative_to(ROOT).as_posix())
                    break
    return found


def test_msgspec_is_imported_only_inside_the_collector():
    """No module outside baseplate_events/collector/ imports msgspec (a web app lacks it)."""
    outside = [p for p in _importers("msgspec") if not p.startswith("baseplate_events/collector/")]
    assert [] == outside
