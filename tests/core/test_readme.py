"""Every code block of README.md runs, or says why not (see tests/support/readme_blocks.py)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest

from publisher.config import parse as publisher_config
from tests.conftest import unique_queue_name
from tests.support.readme_blocks import KNOWN_MARKERS, ROOT, Block, blocks, runnable

BIN = os.path.dirname(sys.executable)
#: Languages a block may have, and how a test reads each.
LANGUAGES = {"": "text", "python": "run", "ini": "parse", "sh": "run", "thrift": "file"}


def _env() -> Dict[str, str]:
    """This interpreter's ``python`` first on PATH, as in an activated venv."""
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _skip_if_pending(block: Block) -> None:
    pending = block.markers.get("pending")
    if pending is None:
        return
    match = re.fullmatch(r"needs ([\w.]+) \((.+)\)", pending)
    assert match, f"{block.label}: write the marker as 'pending: needs MODULE (reason)'"
    module, reason = match.groups()
    if importlib.util.find_spec(module.split(".")[0]) is not None:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        assert not found, f"{block.label}: {module} exists now; remove the pending marker"
    pytest.skip(f"{block.label} is pending: {reason}")


def test_every_block_has_a_known_language_and_known_markers() -> None:
    """Each block is text, Python, INI, shell or Thrift, with markers the tests know."""
    problems = [
        f"{block.label}: language {block.language!r}"
        for block in blocks()
        if block.language not in LANGUAGES
    ] + [
        f"{block.label}: marker {name!r}"
        for block in blocks()
        for name in block.markers
        if name not in KNOWN_MARKERS
    ]
    assert [] == problems


def test_not_run_markers_give_a_reason() -> None:
    """A block that is not run says why, in more than a word."""
    reasons = [block.markers["not-run"] for block in blocks() if "not-run" in block.markers]
    assert reasons, "the README has no not-run block: is the marker still parsed?"
    assert [] == [reason for reason in reasons if len(reason.split()) < 3]


def test_blocks_without_a_runner_are_files() -> None:
    """A Thrift block is not run, so it must be a file of the repository."""
    unchecked = [
        block.label
        for block in blocks()
        if LANGUAGES.get(block.language) == "file" and "file" not in block.markers
    ]
    assert [] == unchecked


@pytest.mark.parametrize(
    "block", [b for b in blocks() if "file" in b.markers], ids=lambda b: b.markers["file"]
)
def test_file_blocks_are_the_files(block: Block) -> None:
    """A block marked ``file: PATH`` is that file of the repository, word for word."""
    assert (ROOT / block.markers["file"]).read_text(encoding="utf-8") == block.text


def test_python_blocks_run_or_are_the_examples_tests_run(tmp_path: Path) -> None:
    """A Python block runs in a fresh interpreter, or is an examples/quickstart file."""
    python = [block for block in blocks() if block.language == "python"]
    assert python, "the README has no Python block: is the parser still right?"
    files = [block.markers["file"] for block in python if "file" in block.markers]
    # tests/core/test_examples.py runs these; the quick-start test runs app.py as a server.
    assert [] == [path for path in files if not path.startswith("examples/quickstart/")]
    failures = []
    for block in runnable("python"):
        result = subprocess.run(
            [sys.executable, "-c", block.text], cwd=tmp_path, env=_env(),
            capture_output=True, text=True, timeout=60,
        )
        if (result.returncode, result.stderr) != (0, ""):
            failures.append((block.label, result.returncode, result.stderr))
    assert [] == failures


@pytest.mark.parametrize(
    "block", [b for b in blocks() if b.language == "ini" and "not-run" not in b.markers],
    ids=lambda b: b.label,
)
def test_ini_blocks_load_as_publisher_configs(block: Block, tmp_path: Path) -> None:
    """Each INI block is a publisher configuration that loads without an unknown key."""
    _skip_if_pending(block)
    path = tmp_path / "publisher.ini"
    path.write_text(block.text)
    sections = re.findall(r"^\[event-publisher:([^\]]+)\]", block.text, re.MULTILINE)
    assert sections, f"{block.label}: no [event-publisher:NAME] section"
    for name in sections:
        assert () == publisher_config.load(str(path), name).unknown_keys


@pytest.mark.system
@pytest.mark.parametrize("block", runnable("sh"), ids=lambda b: b.label)
def test_shell_blocks_run(block: Block) -> None:
    """Each shell block exits 0 from the repository's root."""
    _skip_if_pending(block)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text], cwd=ROOT, env=_env(),
        capture_output=True, text=True, timeout=120,
    )
    assert (0, "") == (result.returncode, result.stderr)


# -- the quick start -----------------------------------------------------------


def _quickstarts() -> List[Block]:
    """The README's quick start and the docs' blocks marked ``run: quickstart``."""
    from tests.support.readme_blocks import doc_blocks

    found = [b for b in blocks() + doc_blocks() if b.markers.get("run") == "quickstart"]
    assert "README.md" in {b.source for b in found}, "the README's quick start is not marked"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _replace(text: str, old: str, new: str, where: str) -> str:
    assert old in text, f"{where} no longer holds {old!r}; update tests/core/test_readme.py"
    return text.replace(old, new)


def _wait_for_port(port: int, processes: List[subprocess.Popen], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            with socket.create_connection(("localhost", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def _events(port: int) -> dict:
    with urllib.request.urlopen(f"http://localhost:{port}/api/events", timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def _stop(processes: List[subprocess.Popen]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _unlink_queue(name: str) -> None:
    import posix_ipc

    try:
        posix_ipc.unlink_message_queue("/events-" + name)
    except posix_ipc.ExistentialError:
        pass


@pytest.mark.system
@pytest.mark.parametrize("block", _quickstarts(), ids=lambda b: b.label)
def test_quickstart_puts_the_users_event_on_the_collector(block: Block, tmp_path: Path) -> None:
    """The quick start's commands, run as written, bring the app's event to the collector."""
    _skip_if_pending(block)
    collector_port, app_port = _free_port(), _free_port()
    queue = unique_queue_name("qs")
    shutil.copytree(ROOT / "examples" / "quickstart", tmp_path / "examples" / "quickstart")
    work = tmp_path / "examples" / "quickstart"
    for name, swaps in {
        "app.py": [('"events.queue_name": "shop"', f'"events.queue_name": "{queue}"'),
                   ("6543", str(app_port))],
        "publisher.ini": [("[event-publisher:shop]", f"[event-publisher:{queue}]"),
                          ("localhost:8080", f"localhost:{collector_port}")],
    }.items():
        text = (work / name).read_text()
        for old, new in swaps:
            text = _replace(text, old, new, f"examples/quickstart/{name}")
        (work / name).write_text(text)
    script = block.text
    for old, new in [("--queue-name shop", f"--queue-name {queue}"),
                     ("--port 8080", f"--port {collector_port}"),
                     ("localhost:6543", f"localhost:{app_port}")]:
        script = _replace(script, old, new, block.label)

    cwd, processes, answers = tmp_path, [], []
    try:
        for number, line in enumerate(script.splitlines()):
            words = shlex.split(line)
            if words[0] == "cd":
                cwd = cwd / words[1]
            elif line.endswith("&"):
                log = open(tmp_path / f"background-{number}.log", "wb")
                processes.append(subprocess.Popen(
                    shlex.split(line[:-1]), cwd=cwd, env=_env(), stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))
            else:
                _wait_for_port(collector_port, processes)
                _wait_for_port(app_port, processes)
                result = subprocess.run(words, cwd=cwd, env=_env(), capture_output=True,
                                        text=True, timeout=30)
                answers.append((result.returncode, result.stdout))
        assert [(0, '{"added": 42}')] == answers
        deadline = time.monotonic() + 20
        stored = _events(collector_port)
        while stored["total"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
            stored = _events(collector_port)
        assert 1 == stored["total"], json.dumps(stored)
        (event,) = stored["events"]
        named = event["named"]
        assert ("shop", "add", "cart", 42, 1) == (
            named["source"], named["action"], named["noun"], named["item_id"], named["quantity"]
        )
        assert (named["uuid"], True) == (event["uuid"], named["client_timestamp"] > 0)
    finally:
        _stop(processes)
        _unlink_queue(queue)


def test_relative_links_lead_to_files() -> None:
    """Every relative link of the README names a file or folder of the repository."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:]+)\)", text)
    assert targets, "no relative links found: is the pattern still right?"
    assert [] == [target for target in targets if not (ROOT / target).exists()]


def test_make_targets_named_in_the_readme_exist() -> None:
    """Every ``make TARGET`` the README names, run or not, is a target of the Makefile."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", text))
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    assert {"demo", "test", "docs", "bench"} <= named
    assert set() == named - targets
