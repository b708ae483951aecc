"""Shared fixtures: real POSIX queues with unique names, closed and unlinked on teardown.

Queue sizes stay within stock Linux limits (at most 10 messages of at most
8192 bytes) so the suite needs no root and never changes a sysctl.

Under CI (which sets ``CI=true``) a skipped test is a failure: CI runs
``.ci/run`` as root with gcc and openssl, so a skip there (no C compiler, not root, a
stale marker) would hide a test that must run.

A test that starts a process, a broker, a server or a browser is marked
``system`` (``pytest -m "not system"`` is the fast loop). So that the mark
cannot drift, a test without it fails the moment it starts a subprocess, forks,
or makes a socket listen (see :func:`_unmarked_guard`).
"""
from __future__ import annotations

import _posixsubprocess  # type: ignore[import-not-found]
import os
import socket
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Generator, Iterator, List, NoReturn, Optional

import pytest

from baseplate_events.mqueue.posix import MessageQueue

from tests.support.publisher import (
    Ledger,
    PublisherProcess,
    config_file,
)

if TYPE_CHECKING:
    from baseplate_events.runtime.request_events import EventsRuntime
    from demo_app.tansu import TansuBroker

    from tests.support.collector import LocalCollector

#: Every test must run here: see the module docstring.
IN_CI = os.environ.get("CI", "").lower() == "true"


def _fail_skips_in_ci(report: "pytest.CollectReport | pytest.TestReport") -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI, a skipped test is reported failed, with the skip's reason."""
    report = yield
    _fail_skips_in_ci(report)
    violation = item.stash.get(_VIOLATION, None)
    if violation is not None and report.when == "call" and not report.failed:
        report.outcome = "failed"
        report.longrepr = violation
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.LocalCollector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Under CI, a module skipped whole (``importorskip``) is a collection error."""
    report = yield
    _fail_skips_in_ci(report)
    return report


class UnmarkedSystemTest(Exception):
    """Raised where a test without the ``system`` mark starts a process or a server.

    Code under test that swallows it does not hide it: the test is failed
    afterwards all the same.
    """


#: Every way a test could start a process, as (module, name): each is replaced
#: while an unmarked test runs. subprocess (and multiprocessing's spawn and
#: forkserver) end in _posixsubprocess.fork_exec; Popen._execute_child is
#: replaced too, to name the command in the error.
_PROCESS_STARTERS = [(subprocess.Popen, "_execute_child"), (_posixsubprocess, "fork_exec")] + [
    (os, name) for name in ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp")
    if hasattr(os, name)
]


@contextmanager
def _unmarked_guard(item: pytest.Item) -> Iterator[None]:
    """While ``item`` (not marked ``system``) runs, starting a process or listening fails it."""
    hint = (f"{item.nodeid} is not marked system; mark it @pytest.mark.system "
            "(or pytestmark = pytest.mark.system in its module)")

    def refuse(what: str) -> "NoReturn":
        item.stash[_VIOLATION] = f"{what}, but {hint}"
        raise UnmarkedSystemTest(item.stash[_VIOLATION])

    def execute_child(self: object, args: object, *rest: object, **kwargs: object) -> None:
        refuse(f"it starts the process {args!r}")

    def starter(name: str) -> Callable[..., NoReturn]:
        def start(*args: object, **kwargs: object) -> "NoReturn":
            refuse("it forks" if name in ("fork", "forkpty")
                   else f"it starts a process ({name} {args[0]!r})")

        return start

    def listen(self: socket.socket, *args: object) -> None:
        refuse(f"it listens on {self.getsockname()!r}")

    saved = [(owner, name, getattr(owner, name)) for owner, name in _PROCESS_STARTERS]
    saved.append((socket.socket, "listen", socket.socket.listen))
    for owner, name in _PROCESS_STARTERS:
        setattr(owner, name, execute_child if name == "_execute_child" else starter(name))
    socket.socket.listen = listen  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


_VIOLATION = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Iterator[None]:
    """Run a test without the ``system`` mark under :func:`_unmarked_guard`."""
    if item.get_closest_marker("system") is not None:
        return (yield)
    with _unmarked_guard(item):
        return (yield)


#: In the fast loop (``-m "not system"``) a property test runs at most this many
#: examples; ``make test`` and CI run each test's own number.
FAST_LOOP_EXAMPLES = 25


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """In the fast loop, cap every Hypothesis test at :data:`FAST_LOOP_EXAMPLES` examples.

    Hypothesis reads a test's settings when it runs, from the attribute its
    ``@given`` keeps them in; a test without it is left as it is.
    """
    if " ".join(str(config.getoption("markexpr", "")).split()) != "not system":
        return
    from hypothesis import settings

    for item in items:
        test = getattr(item, "obj", None)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if isinstance(current, settings) and current.max_examples > FAST_LOOP_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
                current, max_examples=FAST_LOOP_EXAMPLES)


#: Queue sizes that fit `fs.mqueue.msg_max=10`, `msgsize_max=8192`.
TEST_MAX_MESSAGES = 10
TEST_MAX_MESSAGE_SIZE = 8192


def unique_queue_name(prefix: str = "t") -> str:
    """A queue name (without the ``/events-`` prefix) no other test uses."""
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A unique event queue name; ``/events-<name>`` is unlinked on teardown."""
    name = unique_queue_name()
    yield name
    _unlink("/events-" + name)


@pytest.fixture
def open_queues() -> Iterator[Callable[..., MessageQueue]]:
    """Open real queues by full name; every one is closed and unlinked on teardown."""
    opened: List[MessageQueue] = []

    def opener(
        name: str,
        max_messages: int = TEST_MAX_MESSAGES,
        max_message_size: int = TEST_MAX_MESSAGE_SIZE,
        **kwargs: object,
    ) -> MessageQueue:
        queue = MessageQueue(name, max_messages, max_message_size, **kwargs)  # type: ignore[arg-type]
        opened.append(queue)
        return queue

    yield opener
    for queue in opened:
        queue.close()
        queue.unlink()


@pytest.fixture
def reader(queue_name: str, open_queues: Callable[..., MessageQueue]) -> MessageQueue:
    """The consumer side of ``/events-<queue_name>`` (what the publisher would hold)."""
    return open_queues("/events-" + queue_name)


@pytest.fixture
def small_reader(queue_name: str, open_queues: Callable[..., MessageQueue]) -> MessageQueue:
    """The publisher's end of the test queue: 10 messages of 2048 bytes."""
    from tests.support.apps import MESSAGE_SIZE

    return open_queues("/events-" + queue_name, 10, MESSAGE_SIZE)


@pytest.fixture
def runtimes() -> Iterator[List["EventsRuntime"]]:
    """The runtimes of the apps a test builds; each one's queue descriptor is closed on teardown."""
    built: List["EventsRuntime"] = []
    yield built
    for runtime in built:
        runtime.close()


@pytest.fixture
def publisher_queue(small_reader: MessageQueue) -> MessageQueue:
    """The test's queue as the apps put on it for the test publisher (``small_reader``'s)."""
    return small_reader


@pytest.fixture
def ledger(publisher_queue: MessageQueue) -> Ledger:
    """Puts events on the test's queue and counts them by uuid (see :class:`Ledger`)."""
    return Ledger(publisher_queue)


@pytest.fixture
def publisher_for(
    queue_name: str, tmp_path: Path
) -> Iterator[Callable[..., PublisherProcess]]:
    """Make (not start) publishers for the test's queue; all killed on teardown.

    ``publisher_for(hostname, debug=False, **keys)`` writes ``tmp_path/publisher.ini``
    from :func:`config_file` (spool in ``tmp_path/spool``) with ``keys`` over it;
    the log is ``tmp_path/publisher.log``.
    """
    made: List[PublisherProcess] = []

    def make(hostname: str, debug: bool = False, **keys: Optional[str]) -> PublisherProcess:
        path = config_file(queue_name, hostname, tmp_path, **keys)
        process = PublisherProcess(queue_name, path, tmp_path / "publisher.log", debug=debug)
        made.append(process)
        return process

    yield make
    for process in made:
        process.kill()


@pytest.fixture
def start_publisher(
    publisher_for: Callable[..., PublisherProcess]
) -> Callable[..., PublisherProcess]:
    """``start_publisher(collector, **keys)``: a publisher_for that collector, started."""

    def start(collector: "LocalCollector", **keys: Optional[str]) -> PublisherProcess:
        return publisher_for(collector.hostname, **keys).start()

    return start


def _unlink(full_name: str) -> None:
    import posix_ipc

    try:
        posix_ipc.unlink_message_queue(full_name)
    except posix_ipc.ExistentialError:
        pass


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator["TansuBroker"]:
    """A real Kafka-protocol broker (Tansu, in memory) on a free loopback port, for the session.

    Tests keep apart by topic names of their own (see ``kafka_topics``); one
    that pauses the broker resumes it before it returns.
    """
    from demo_app.tansu import TansuBroker

    with TansuBroker.start(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture
def kafka_topics() -> Dict[str, str]:
    """Topic names no other test uses, one per stream (``kafka.topic.<stream>``)."""
    tag = uuid.uuid4().hex[:10]
    return {stream: f"events.{stream}.{tag}" for stream in ("v1", "v2", "v2j")}


@pytest.fixture
def small_disk(tmp_path: "os.PathLike[str]") -> Iterator[str]:
    """A 1 MiB tmpfs mounted for the test (needs root), to fill up."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a 1 MiB tmpfs to fill the disk")
    path = os.path.join(str(tmp_path), "disk")
    os.mkdir(path, 0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=True)


def fill_disk(path: str, leave: int = 0) -> int:
    """Write the file ``path`` until its filesystem is full, then give back ``leave`` bytes.

    Returns the file's size.
    """
    import errno

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"\0" * 4096
    try:
        while True:
            try:
                if os.write(fd, block) < len(block):
                    break
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        size = os.fstat(fd).st_size
        os.ftruncate(fd, max(0, size - leave))
        return max(0, size - leave)
    finally:
        os.close(fd)
