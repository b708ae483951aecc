"""The module map script: rows per folder from the working tree or a git revision."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import module_map

FILES = {
    "publisher/__init__.py": '"""The publisher.\n\nMore."""\n',
    "publisher/spool/__init__.py": "",
    "publisher/spool/reader.py": '"""Reads the spool.\n"""\nimport os\n\nx = 1\n',
}


def _write(root: Path) -> None:
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_rows_hold_lines_and_first_docstring_line_grouped_by_folder(tmp_path: Path) -> None:
    """Each folder lists its __init__ first, then modules with lines and docstring line."""
    _write(tmp_path)
    assert module_map.grouped(module_map.tree_sources(tmp_path)) == {
        "publisher": [("__init__.py", 3, "The publisher.")],
        "publisher/spool": [
            ("__init__.py", 0, "(empty)"),
            ("reader.py", 5, "Reads the spool."),
        ],
    }


@pytest.mark.system
def test_revision_reads_the_committed_files_not_the_working_tree(tmp_path: Path) -> None:
    """--rev reads each file as committed, even when the working tree has changed it."""
    _write(tmp_path)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (tmp_path / "publisher/spool/reader.py").write_text('"""Changed."""\n', encoding="utf-8")
    assert module_map.revision_sources("HEAD", tmp_path) == FILES


@pytest.mark.system
def test_unknown_revision_is_named_in_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown --rev exits with git's own words after the revision's name."""
    subprocess.run(["git", "-C", str(tmp_path), "init", "-q"], check=True)
    monkeypatch.setattr(module_map, "ROOT", tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        module_map.main(["--rev", "no-such-rev"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m benchmarks.module_map: error: --rev no-such-rev: "
        "git says: fatal: Not a valid object name no-such-rev"
    )


def test_graph_names_each_circle_and_each_folders_imports() -> None:
    """--graph names a module circle and lists, per folder, the folders it imports."""
    known = module_map.as_modules({
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.sub import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "def f():\n    from pkg import a\n",
    })
    assert list(module_map.render_graph(known, "of the test")) == [
        "import graph of the test: 4 modules, 2 imports between them",
        "  module circle: pkg.a -> pkg.sub.b -> pkg.a",
        "    (all of pkg.a, pkg.sub.b)",
        "",
        "folders, each with the folders it imports (how many module-to-module imports):",
        "  pkg/ -> pkg/sub/ (1)",
        "  pkg/sub/ -> pkg/ (1)",
        "  folder circle: pkg/ -> pkg/sub/ -> pkg/",
        "    (all of pkg/, pkg/sub/)",
    ]
