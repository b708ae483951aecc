"""The guard behind the ``system`` marker: an unmarked test that starts a process,
forks or listens fails, so that ``pytest -m "not system"`` stays fast."""
from __future__ import annotations

import os
import socket
import subprocess
import textwrap
from typing import Callable

import pytest

from tests.conftest import _VIOLATION, UnmarkedSystemTest

pytest_plugins = ["pytester"]


def _forget_violation(request: pytest.FixtureRequest) -> None:
    """The violation was provoked on purpose: do not fail this test for it."""
    del request.node.stash[_VIOLATION]


def test_an_unmarked_test_cannot_start_a_process(request: pytest.FixtureRequest) -> None:
    """subprocess.run in a test without the mark raises, naming the test and the fix."""
    with pytest.raises(UnmarkedSystemTest) as raised:
        subprocess.run(["true"], check=True)
    _forget_violation(request)
    assert str(raised.value) == (
        "it starts the process ['true'], but tests/core/test_system_marker.py::"
        "test_an_unmarked_test_cannot_start_a_process is not marked system; mark it "
        "@pytest.mark.system (or pytestmark = pytest.mark.system in its module)"
    )


def test_an_unmarked_test_cannot_listen(request: pytest.FixtureRequest) -> None:
    """A socket that listens in a test without the mark raises, naming the address."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        with pytest.raises(UnmarkedSystemTest) as raised:
            server.listen()
    _forget_violation(request)
    assert str(raised.value).startswith(f"it listens on ('127.0.0.1', {port}), but tests/")


def test_an_unmarked_test_cannot_fork(request: pytest.FixtureRequest) -> None:
    """os.fork in a test without the mark raises before any child exists."""
    with pytest.raises(UnmarkedSystemTest) as raised:
        os.fork()
    _forget_violation(request)
    assert str(raised.value).startswith("it forks, but tests/")


@pytest.mark.parametrize("start, expected", [
    (lambda: os.system("true"), "it starts a process (system 'true'), but tests/"),
    (lambda: os.posix_spawnp("true", ["true"], {}),
     "it starts a process (posix_spawnp 'true'), but tests/"),
])
def test_an_unmarked_test_cannot_start_a_process_by_other_means(
    request: pytest.FixtureRequest, start: Callable[[], object], expected: str
) -> None:
    """os.system and os.posix_spawnp are refused as subprocess is."""
    with pytest.raises(UnmarkedSystemTest) as raised:
        start()
    _forget_violation(request)
    assert str(raised.value).startswith(expected)


def test_multiprocessing_spawn_is_refused(request: pytest.FixtureRequest) -> None:
    """A spawned multiprocessing child (its own fork_exec) is a process too."""
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=print)
    with pytest.raises(UnmarkedSystemTest) as raised:
        process.start()
    _forget_violation(request)
    assert str(raised.value).startswith("it starts a process (fork_exec ")


def test_a_client_socket_is_no_server(request: pytest.FixtureRequest) -> None:
    """Connecting out is allowed: only listening counts as a server."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.sendto(b"x", client.getsockname())
        assert client.recv(1) == b"x"
    assert _VIOLATION not in request.node.stash


@pytest.mark.system
def test_a_swallowed_violation_still_fails_and_a_marked_test_may_start_processes(
    pytester: pytest.Pytester,
) -> None:
    """Inner run: a violation caught by the code under test fails; a marked test passes."""
    pytester.makeconftest(
        "from tests.conftest import pytest_runtest_makereport, pytest_runtest_protocol\n"
    )
    pytester.makepyfile(
        test_inner=textwrap.dedent(
            """
            import subprocess
            import pytest

            def test_swallows():
                try:
                    subprocess.run(["true"])
                except Exception:
                    pass

            @pytest.mark.system
            def test_marked():
                subprocess.run(["true"], check=True)
            """
        )
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=1, failed=1)
    assert (
        "it starts the process ['true'], but test_inner.py::test_swallows is not marked "
        "system; mark it @pytest.mark.system (or pytestmark = pytest.mark.system in its "
        "module)"
    ) in result.stdout.lines


_COUNTING_TEST = textwrap.dedent(
    """
    from hypothesis import given, settings, strategies as st

    RUNS = []

    @settings(max_examples=200, database=None)
    @given(st.integers())
    def test_counts(number):
        RUNS.append(number)

    def test_report():
        print(f"examples run: {len(RUNS)}")
    """
)


@pytest.mark.parametrize("args, expected", [
    (("-m", "not system"), "examples run: 25"),
    ((), "examples run: 200"),
])
def test_the_fast_loop_caps_hypothesis_examples(
    pytester: pytest.Pytester, args: "tuple[str, ...]", expected: str
) -> None:
    """-m "not system" runs 25 examples of a 200-example test; a plain run runs all 200."""
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems\n")
    pytester.makepyfile(test_counting=_COUNTING_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s", *args)
    result.assert_outcomes(passed=2)
    assert expected in result.stdout.str()
