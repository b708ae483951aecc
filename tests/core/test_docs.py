"""Every command the docs' pages show runs, or its block says why not.

The same machinery and markers as README.md's test (tests/support/readme_blocks.py,
tests/core/test_readme.py): a ``.. code-block::`` of an ``.rst`` page runs as it
stands (shell in bash, Python in a fresh interpreter, INI through the
publisher's config loader), unless an rst comment above it says otherwise:
``.. not-run: REASON``, or ``.. run: SCENARIO`` for the blocks that start
servers, make queues or read a broker, which a test below runs with its ports,
paths and queue names swapped for free and private ones.
"""
from __future__ import annotations

import contextlib
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
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from publisher.config import parse as publisher_config
from tests.conftest import unique_queue_name
from tests.support.readme_blocks import KNOWN_MARKERS, ROOT, Block, doc_blocks, pages
from tests.core.test_readme import _env, _skip_if_pending

#: how each language is checked; "text" blocks show output and are not run
LANGUAGES = {"text": "shown", "sh": "run", "python": "run", "ini": "load", "yaml": "not-run",
             "thrift": "file"}
#: the scenarios a ``.. run: NAME`` marker may name, each run by a test here
#: (``quickstart`` by tests/core/test_readme.py's quick-start test)
SCENARIOS = {"server", "queue-tool", "queue-python", "local-kafka", "kafka-tail", "quickstart",
             "quickstart-test"}
EXAMPLES = ROOT / "examples"
KEY = "demo=c2VjcmV0"  # the docs' key: name demo, secret "secret"


def _blocks(language: str, scenario: str = "") -> List[Block]:
    """The blocks of ``language`` run by the generic test (no marker), or by ``scenario``."""
    return [
        block for block in doc_blocks()
        if block.language == language
        and (block.markers.get("run") == scenario if scenario
             else not {"not-run", "file", "run"} & set(block.markers))
    ]


# -- the markers ------------------------------------------------------------------


def test_the_docs_have_code_blocks_on_every_page_that_shows_commands() -> None:
    """The parser finds blocks on the pages (a broken parser would make every test vacuous)."""
    found = {block.source for block in doc_blocks()}
    assert {"docs/collector.rst", "docs/publisher.rst", "docs/getting-started.rst",
            "docs/operations.rst", "docs/migration.rst", "docs/events.rst"} <= found
    assert all(page.name != "" for page in pages())


def test_every_block_has_a_known_language_and_known_markers() -> None:
    """Each block's language and markers are ones these tests know how to check."""
    problems = [f"{b.label}: language {b.language!r}" for b in doc_blocks()
                if b.language not in LANGUAGES]
    problems += [f"{b.label}: marker {name!r}" for b in doc_blocks() for name in b.markers
                 if name not in KNOWN_MARKERS]
    problems += [f"{b.label}: scenario {b.markers['run']!r}" for b in doc_blocks()
                 if "run" in b.markers and b.markers["run"] not in SCENARIOS]
    assert [] == problems


def test_not_run_markers_give_a_reason() -> None:
    """A block that is not run says why, in more than a couple of words."""
    reasons = {b.label: b.markers["not-run"] for b in doc_blocks() if "not-run" in b.markers}
    assert reasons, "no not-run block in the docs: is the marker still parsed?"
    assert {} == {label: reason for label, reason in reasons.items() if len(reason.split()) < 3}


def test_blocks_that_are_never_run_say_why() -> None:
    """A YAML block is not run by anything here, so it must carry a not-run reason."""
    assert [] == [b.label for b in doc_blocks()
                  if LANGUAGES.get(b.language) == "not-run" and "not-run" not in b.markers]


def test_every_scenario_named_runs_at_least_one_block() -> None:
    """Each scenario this file runs is named by some block (none is left testing nothing)."""
    named = {b.markers["run"] for b in doc_blocks() if "run" in b.markers}
    assert set() == SCENARIOS - named


#: how a command starts; a literal ``::`` block starting so would escape these tests
_COMMAND = re.compile(r"^(python3? |pip |gunicorn |make |curl |sudo |thrift "
                      r"|baseplate-events-[a-z-]+ |systemctl |docker |promtool )")


def test_commands_are_in_code_blocks_not_literal_blocks() -> None:
    """No ``::`` literal block starts with a command: commands go in ``.. code-block:: sh``."""
    found = []
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not line.rstrip().endswith("::") or line.lstrip().startswith(".."):
                continue
            body = number + 1
            while body < len(lines) and not lines[body].strip():
                body += 1
            if body < len(lines) and _COMMAND.match(lines[body].strip()):
                found.append(f"{page.relative_to(ROOT)}:{body + 1}: {lines[body].strip()}")
    assert [] == found


# -- blocks that run as they stand ---------------------------------------------------


def _docs_env(extra_path: str = "") -> Dict[str, str]:
    """The venv's commands first on PATH; the checkout importable (``event_schemas``)."""
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, str(ROOT)) if p)
    return env


@pytest.mark.system
@pytest.mark.parametrize("block", _blocks("python"), ids=lambda b: b.label)
def test_python_blocks_run(block: Block, tmp_path: Path) -> None:
    """A Python block runs in a fresh interpreter and exits 0 (its own warnings may show)."""
    _skip_if_pending(block)
    result = subprocess.run([sys.executable, "-c", block.text], cwd=tmp_path, env=_docs_env(),
                            capture_output=True, text=True, timeout=60)
    assert (0, False) == (result.returncode, "Traceback" in result.stderr), result.stderr


def _needs_programs(block: Block) -> None:
    """Skip, with the install command, when a block's program is not on this machine."""
    if re.search(r"(^|[;&|(]\s*)thrift\b", block.text, re.MULTILINE) and not shutil.which(
            "thrift"):
        pytest.skip(f"{block.label} needs the Thrift compiler: sudo apt-get install "
                    f"thrift-compiler (Debian/Ubuntu) or brew install thrift (macOS)")


@pytest.mark.system
@pytest.mark.parametrize("block", _blocks("sh"), ids=lambda b: b.label)
def test_shell_blocks_run(block: Block, tmp_path: Path) -> None:
    """A shell block exits 0 in bash, from a directory holding a copy of examples/."""
    _skip_if_pending(block)
    _needs_programs(block)
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path,
                            env=_docs_env(), capture_output=True, text=True, timeout=120)
    assert (0, "") == (result.returncode, result.stderr)


@pytest.mark.system
def test_the_thrift_command_regenerates_the_committed_code(tmp_path: Path) -> None:
    """The getting-started page's thrift command gives exactly the committed shop_events/."""
    (block,) = [b for b in _blocks("sh") if "thrift --gen py" in b.text]
    _needs_programs(block)
    work = tmp_path / "examples" / "quickstart"
    work.mkdir(parents=True)
    shutil.copy(EXAMPLES / "quickstart" / "shop.thrift", work)
    subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path,
                   env=_docs_env(), check=True, capture_output=True, timeout=60)
    committed = EXAMPLES / "quickstart" / "shop_events"
    made = {p.relative_to(work / "shop_events"): p.read_bytes()
            for p in (work / "shop_events").rglob("*.py")}
    assert made == {p.relative_to(committed): p.read_bytes() for p in committed.rglob("*.py")}


@pytest.mark.parametrize("block", [b for b in doc_blocks() if b.language == "ini"
                                   and not {"not-run", "run"} & set(b.markers)],
                         ids=lambda b: b.label)
def test_ini_blocks_load_as_publisher_configs(block: Block, tmp_path: Path) -> None:
    """Each INI block is a publisher configuration that loads without an unknown key.

    A ``key.secret_file`` it names is made, private, under the test's directory."""
    text = block.text
    for secret_file in re.findall(r"^key\.secret_file = (\S+)", text, re.MULTILINE):
        made = tmp_path / secret_file.lstrip("/")
        made.parent.mkdir(parents=True, exist_ok=True)
        made.write_text("c2VjcmV0\n")
        made.chmod(0o600)
        text = text.replace(f"key.secret_file = {secret_file}", f"key.secret_file = {made}")
    path = tmp_path / "publisher.ini"
    path.write_text(text)
    sections = re.findall(r"^\[event-publisher:([^\]]+)\]", block.text, re.MULTILINE)
    assert sections, f"{block.label}: no [event-publisher:NAME] section"
    for name in sections:
        assert () == publisher_config.load(str(path), name).unknown_keys


# -- scenarios: the blocks run with free ports, private paths and queue names ------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _commands(text: str) -> List[List[str]]:
    """The block's commands: comments dropped, ``\\`` and quoted newlines joined."""
    commands: List[List[str]] = []
    pending = ""
    for line in text.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        pending = ""
        if words:
            commands.append(words)
    assert not pending, f"an unclosed quote in {text!r}"
    return commands


def _unlink_queue(name: str) -> None:
    import posix_ipc

    try:
        posix_ipc.unlink_message_queue("/events-" + name)
    except posix_ipc.ExistentialError:
        pass


def _publisher_ini(path: Path, queue: str, collector_port: int, spool: Path) -> Path:
    path.write_text(
        f"[event-publisher:{queue}]\n"
        f"collector.hostname = localhost:{collector_port}\ncollector.scheme = http\n"
        f"key.name = demo\nkey.secret = c2VjcmV0\n"
        f"max_queue_size = 10\nmax_event_size = 8192\n"
        f"spool.path = {spool}\nspool.fsync = never\n")
    return path


def _wait(what: str, ready: Callable[[], bool], process: subprocess.Popen, log: Path,
          timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"{what} exited ({process.returncode}):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{what} not ready in {timeout}s:\n{log.read_text()}"
        time.sleep(0.05)


def _port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    return check


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise


def _swap_server_words(words: List[str], port: int, queue: str, work: Path) -> List[str]:
    """A server command with a free port, a private queue and paths under ``work``.

    ``-b HOST:PORT`` (gunicorn) listens on the free port; any other
    ``HOST:PORT`` on this machine (a metrics address) gets a free port too."""
    swapped = []
    for word in words:
        word = word.replace("/etc/baseplate-events/publisher.ini", str(work / "publisher.ini"))
        word = word.replace("/var/lib/events", str(work / "events"))
        if swapped and swapped[-1] == "-b":
            word = f"127.0.0.1:{port}"
        else:
            word = re.sub(r"\b(127\.0\.0\.1|0\.0\.0\.0):\d{4,5}\b",
                          lambda m: f"127.0.0.1:{_free_port()}", word)
        swapped.append(word)
    for flag, value in (("--port", str(port)), ("--queue-name", queue)):
        if flag in swapped:
            swapped[swapped.index(flag) + 1] = value
    if swapped[:3] == ["python", "-m", "baseplate_events.collector"] and "--port" not in swapped:
        swapped += ["--port", str(port)]  # its default, 8080, may be taken on this machine
    return swapped


@pytest.fixture
def private_queue() -> Iterator[str]:
    name = unique_queue_name("docs")
    yield name
    _unlink_queue(name)


@pytest.mark.system
@pytest.mark.parametrize(
    "block_and_command",
    [(b, n) for b in _blocks("sh", "server") for n in range(len(_commands(b.text)))],
    ids=lambda bc: f"{bc[0].label}#{bc[1]}")
def test_server_commands_start_and_stop_on_sigterm(
    block_and_command: Tuple[Block, int], tmp_path: Path, private_queue: str,
) -> None:
    """Each server command of the docs starts (listens, or logs its start) and exits 0 on SIGTERM.

    Run from a copy of examples/quickstart (its schema and publisher.ini), with
    its ports swapped for free ones, /etc/baseplate-events/publisher.ini and
    /var/lib/events for files of the test's own, and the queue for a private one."""
    block, number = block_and_command
    work = tmp_path / "work"
    shutil.copytree(EXAMPLES / "quickstart", work)
    port = _free_port()
    _publisher_ini(work / "publisher.ini", private_queue, port, tmp_path / "spool")
    words = _swap_server_words(_commands(block.text)[number], port, private_queue, work)
    env = _docs_env(str(work))
    while re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=VALUE command
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(words, cwd=work, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if any("publisher" in word for word in words[:3]):
            _wait(block.label, lambda: " starting: queue " in log.read_text(), process, log)
        else:
            _wait(block.label, _port_open(port), process, log)
    finally:
        status = _stop(process)
    assert 0 == status, log.read_text()


def _swap_queue_name(text: str, queue: str) -> str:
    return re.sub(r"(baseplate-events-queue) v2\b", rf"\1 {queue}", text)


@pytest.mark.system
@pytest.mark.parametrize("block", _blocks("sh", "queue-tool"), ids=lambda b: b.label)
def test_queue_tool_blocks_run_on_a_private_queue(block: Block, private_queue: str) -> None:
    """The queue tool's commands, on a queue of the test's own, each exit 0."""
    text = _swap_queue_name(block.text, private_queue)
    assert private_queue in text, f"{block.label} names no queue v2 to swap"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=ROOT, env=_docs_env(),
                            capture_output=True, text=True, timeout=60)
    assert (0, False) == (result.returncode, "error" in result.stderr), result.stderr


@pytest.mark.system
@pytest.mark.parametrize("block", _blocks("python", "queue-python"), ids=lambda b: b.label)
def test_queue_python_blocks_put_one_event_on_a_private_queue(
    block: Block, private_queue: str, tmp_path: Path,
) -> None:
    """The block, its queue swapped for a private 10 x 8192 one, puts exactly one event."""
    from baseplate_events.mqueue.posix import MessageQueue

    names = set(re.findall(r"EventQueue\(\"([\w-]+)\"", block.text))
    assert 1 == len(names), f"{block.label}: expected one EventQueue(\"NAME\"), got {names}"
    text = block.text.replace(f'EventQueue("{names.pop()}"', f'EventQueue("{private_queue}"')
    queue = MessageQueue("/events-" + private_queue, max_messages=10, max_message_size=8192)
    try:
        result = subprocess.run([sys.executable, "-c", text], cwd=tmp_path, env=_docs_env(),
                                capture_output=True, text=True, timeout=60)
        assert (0, "") == (result.returncode, result.stderr)
        message = queue.get(timeout=1)
        assert 0 == queue.depth
    finally:
        queue.close()
    assert json.loads(message)  # one JSON event (v1 object or TJSON struct)


@pytest.mark.system
@pytest.mark.parametrize("block", _blocks("python", "quickstart-test"), ids=lambda b: b.label)
def test_the_quickstart_test_passes_under_pytest(block: Block, tmp_path: Path) -> None:
    """The page's test of the quick-start app, as a file beside app.py, passes under pytest."""
    work = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", work)
    (work / "test_cart.py").write_text(block.text)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "test_cart.py"], cwd=work, env=_docs_env(str(work)),
                            capture_output=True, text=True, timeout=120)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@contextlib.contextmanager
def _local_kafka(tmp_path: Path) -> Iterator[Tuple[int, List[str]]]:
    """The local broker and collector commands of the page, run as shown on free ports,
    with 40 v2 events posted to the collector: (the broker's port, the events' uuids)."""
    from tests.support.processes import signed_post
    from tests.system.test_collector import v2_batch, v2_event

    (commands,) = _blocks("sh", "local-kafka")
    broker_port, collector_port = _free_port(), _free_port()
    processes: List[subprocess.Popen] = []
    log = tmp_path / "background.log"
    try:
        for words in _commands(commands.text):
            assert words[-1] == "&", f"{commands.label}: each command runs in the background"
            words = [w.replace("9092", str(broker_port)).replace("8080", str(collector_port))
                     for w in words[:-1]]
            with open(log, "ab") as out:
                processes.append(subprocess.Popen(
                    words, cwd=tmp_path, env=_docs_env(), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True))
            port = broker_port if "demo_app.tansu" in words else collector_port
            _wait(" ".join(words[:3]), _port_open(port), processes[-1], log)
        assert "tansu: Kafka-protocol broker on 127.0.0.1:" in log.read_text()
        events = [v2_event() for _ in range(40)]
        for start in range(0, len(events), 10):
            answer = signed_post(f"http://127.0.0.1:{collector_port}", "/v2",
                                 v2_batch(events[start:start + 10]), b"secret")
            assert 200 == answer.status_code, answer.text
        yield broker_port, [event.uuid for event in events]
    finally:
        statuses = [_stop(process) for process in reversed(processes)]
    assert [0, 0] == statuses, log.read_text()
    assert (tmp_path / "tansu.log").exists()


@pytest.mark.system
def test_the_local_kafka_commands_and_consumer_read_back_every_event(tmp_path: Path) -> None:
    """The local broker and gunicorn commands run as shown; the consumer reads every event."""
    (consumer,) = _blocks("python", "local-kafka")
    with _local_kafka(tmp_path) as (broker_port, uuids):
        script = consumer.text.replace("127.0.0.1:9092", f"127.0.0.1:{broker_port}")
        result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_docs_env(),
                                capture_output=True, text=True, timeout=120)
    assert (0, f"{len(uuids)} events\n", "") == (result.returncode, result.stdout,
                                                 result.stderr)


@pytest.mark.system
@pytest.mark.parametrize("block", _blocks("sh", "kafka-tail"), ids=lambda b: b.label)
def test_the_tail_command_reads_back_every_event_from_the_local_broker(
    block: Block, tmp_path: Path,
) -> None:
    """baseplate-events-tail, as the page shows it, prints each event posted, by uuid."""
    _skip_if_pending(block)
    with _local_kafka(tmp_path) as (broker_port, uuids):
        script = block.text.replace("127.0.0.1:9092", f"127.0.0.1:{broker_port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                                env=_docs_env(), capture_output=True, text=True, timeout=120)
    assert 0 == result.returncode, result.stderr
    assert sorted(uuids) == sorted({json.loads(line)["uuid"]
                                    for line in result.stdout.splitlines()})


# -- what the pages promise about installing and naming ------------------------------


def test_the_collector_extra_installs_gunicorn() -> None:
    """The collector extra has gunicorn, which docs/collector.rst runs right after installing it."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert ["gunicorn"] == [r for r in (re.split(r"[<>=!~ ;\[]", req)[0]
                                         for req in extras["collector"]) if r == "gunicorn"]


@pytest.mark.parametrize("where", ["docs/events.rst", "docs/demo.rst", "docs/migration.rst",
                                   "demo_app/runner.py"])
def test_baseplates_module_names_are_given_for_each_version(where: str) -> None:
    """Where baseplate.py's publisher is named, both its 0.30 and its 1.0+ names are, each with
    its versions."""
    text = " ".join((ROOT / where).read_text(encoding="utf-8").split())
    for name in ("baseplate.events.publisher", "baseplate.sidecars.event_publisher"):
        assert name in text, f"{where} does not name {name}"
    assert "0.30" in text and "2.7.1" in text, f"{where} does not give the versions"
