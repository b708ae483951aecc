"""The runner's child processes: started in their own session, logged to files, stopped in order.

Each child gets its own session so that a Ctrl-C in the terminal reaches only
the runner, which then stops the children in the order the pipeline needs
(apps, then publishers, which flush, then the collector).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence


class ChildFailed(RuntimeError):
    """A child process exited or did not come up in time; the message quotes its log."""


class Child:
    """One subprocess with its output in ``<logdir>/<name>.log``."""

    def __init__(self, name: str, argv: Sequence[str], logdir: Path, cwd: Optional[str] = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"    {self.name}| {line}" for line in text.splitlines()[-lines:])

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        """Wait until the log has a line starting with ``prefix``; return it.

        :raises ChildFailed: the process exited first, or ``timeout`` passed.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
            if self.process.poll() is not None:
                raise ChildFailed(f"{self.name} exited with status {self.process.returncode} "
                                  f"before it was ready:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ChildFailed(f"{self.name} was not ready after {timeout:.0f} s:\n"
                                  f"{self.log_tail()}")
            time.sleep(0.05)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ChildFailed(f"{self.name} exited with status {self.process.returncode}:\n"
                              f"{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; return the exit status."""
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def python_module(module: str, *args: str) -> List[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def stop_all(children: Sequence[Child]) -> List[str]:
    """Stop children in the order given; describe any that did not exit cleanly."""
    problems: List[str] = []
    for child in children:
        status = child.stop()
        if status not in (0, None):
            problems.append(f"{child.name} exited with status {status}")
    return problems
