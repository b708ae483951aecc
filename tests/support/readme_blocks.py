"""The code blocks of README.md and of the docs' pages, with the markers that say how
each is tested (tests/core/test_readme.py and tests/core/test_docs.py).

In the docs' ``.rst`` pages a block is a ``.. code-block:: LANG`` directive and
a marker is an rst comment above it (blank lines between are allowed), the
same markers as below: ``.. not-run: REASON``, ``.. file: PATH``,
``.. run: SCENARIO``, ``.. pending: needs MODULE (REASON)``.

A marker is an HTML comment on the line(s) right above a block's fence:

``<!-- not-run: REASON -->``
    not run (a sysctl, an install from the network); the reason is required.
``<!-- file: PATH -->``
    the block is the repository's file PATH, word for word.
``<!-- run: quickstart -->``
    run by ``tests/core/test_readme.py``'s quick-start test, which starts the
    lines that end in ``&`` in the background.
``<!-- pending: needs MODULE (REASON) -->``
    skipped while MODULE cannot be imported; a failure once it can.

Every other block runs: Python is executed, INI is loaded by the publisher's
config loader, shell runs in bash from the repository's root.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*([a-z-]+):\s*(.*?)\s*-->\s*$")
KNOWN_MARKERS = frozenset({"not-run", "file", "run", "pending"})


@dataclass
class Block:
    """One fenced block: its language, text, first line number and markers."""

    language: str
    text: str
    line: int
    markers: Dict[str, str] = field(default_factory=dict)
    #: the file it is in, relative to the repository's root
    source: str = "README.md"

    @property
    def label(self) -> str:
        return f"{self.source}:{self.line} ({self.language or 'plain'})"


def blocks(path: Path = README) -> List[Block]:
    """Every fenced block of ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: List[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        markers: Dict[str, str] = {}
        above = index - 1
        while above >= 0 and _MARKER.match(lines[above]):
            name, value = _MARKER.match(lines[above]).groups()  # type: ignore[union-attr]
            markers[name] = value
            above -= 1
        end = index + 1
        while end < len(lines) and lines[end] != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"README.md:{index + 1}: a code block is never closed")
        text = "\n".join(lines[index + 1 : end]) + "\n"
        found.append(Block(opening.group(1), text, index + 1, markers))
        index = end + 1
    return found


def runnable(language: str) -> List[Block]:
    """The blocks of ``language`` that a test runs: no not-run, file or run marker."""
    return [
        block
        for block in blocks()
        if block.language == language
        and not {"not-run", "file", "run"} & set(block.markers)
    ]


DOCS = ROOT / "docs"
_DIRECTIVE = re.compile(r"^\.\. code-block::\s*(\S*)\s*$")
_RST_MARKER = re.compile(r"^\.\.\s+([a-z-]+):\s+(.*?)\s*$")


def pages() -> List[Path]:
    """The docs' ``.rst`` pages, in name order."""
    return sorted(DOCS.glob("*.rst"))


def rst_blocks(path: Path) -> List[Block]:
    """Every ``.. code-block::`` of an ``.rst`` page (at the left margin), in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    source = str(path.relative_to(ROOT))
    found: List[Block] = []
    for index, line in enumerate(lines):
        opening = _DIRECTIVE.match(line)
        if opening is None:
            continue
        markers: Dict[str, str] = {}
        above = index - 1
        while above >= 0 and (not lines[above].strip() or _RST_MARKER.match(lines[above])):
            marker = _RST_MARKER.match(lines[above])
            if marker is not None:
                markers[marker.group(1)] = marker.group(2)
            above -= 1
        body = index + 1
        while body < len(lines) and (not lines[body].strip()
                                     or lines[body].lstrip().startswith(":")):
            body += 1
        end = body
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" ")):
            end += 1
        text = textwrap.dedent("\n".join(lines[body:end])).strip("\n") + "\n"
        found.append(Block(opening.group(1), text, index + 1, markers, source))
    return found


def doc_blocks() -> List[Block]:
    """The code blocks of every page of the docs."""
    return [block for page in pages() for block in rst_blocks(page)]
