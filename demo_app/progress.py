"""A progress bar and a plain-text table for the demo runner's output.

Hand-written rather than tqdm or rich: the runner needs one bar and one table,
which is a few dozen lines, and the demo then needs nothing beyond the test
extras. It redraws in place on a terminal and, when the output is a pipe or a
CI log, prints a line at each quarter instead of a stream of carriage returns.
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional, Sequence, TextIO


class ProgressBar:
    """``label [#########-----------]  120/300  1.4s``"""

    def __init__(self, label: str, total: int, stream: Optional[TextIO] = None, width: int = 30):
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.width = width
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.started = time.monotonic()
        self._last_quarter = -1
        self._draw()

    def update(self, done: int) -> None:
        self.done = min(done, self.total)
        self._draw()

    def advance(self, step: int = 1) -> None:
        self.update(self.done + step)

    def finish(self, note: str = "") -> None:
        self._draw(final=True, note=note)

    def _line(self, note: str = "") -> str:
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self.started
        text = f"{self.label:<22} [{bar}] {self.done:>5}/{self.total:<5} {elapsed:5.1f}s"
        return f"{text}  {note}" if note else text

    def _draw(self, final: bool = False, note: str = "") -> None:
        if self.interactive:
            self.stream.write("\r" + self._line(note) + ("\n" if final else ""))
            self.stream.flush()
            return
        quarter = 4 * self.done // self.total
        if final or quarter > self._last_quarter:
            self._last_quarter = quarter
            if final or self.done < self.total:
                self.stream.write(self._line(note) + "\n")
                self.stream.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to fit; the first left-aligned, the others right-aligned."""
    cells: List[List[str]] = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def render(row: List[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(cells[0]), rule] + [render(r) for r in cells[1:]])
