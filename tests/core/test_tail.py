"""``baseplate-events-tail`` on JSONL files and SQLite databases written by the real sinks.

The files and databases are made by the collector's own sinks
(:class:`JSONLSink`, :class:`SQLiteSink`); the tail runs in this process
through its ``main`` (output into a buffer) or, for ``--follow``, through a
reader driven step by step.
"""
from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from baseplate_events import serialize_v2_event
from baseplate_events.collector.decode.schema import struct_shape
from baseplate_events.collector.sinks import StoredEvent
from baseplate_events.collector.sinks.jsonl import JSONLSink
from baseplate_events.collector.sinks.sqlite import SQLiteSink
from baseplate_events.collector.tail import CAUGHT_UP, TailedEvent, TailRequest
from baseplate_events.collector.tail.__main__ import main
from baseplate_events.collector.tail.files import JSONLReader
from baseplate_events.collector.tail.sqlite import SQLiteReader
from event_schemas.event.ttypes import Event
from publisher.paths import owner_name
from tests.support.users import needs_root, throwaway_uid

SCHEMA = "event_schemas.event.ttypes:Event"
T0 = 1_796_000_000_000


def v2(number: int, received_ms: int = T0, **fields: Any) -> StoredEvent:
    """A v2 event of the sample schema whose ``action`` is ``a<number>``."""
    event = Event(source="shop", action=f"a{number}", noun="cart", client_timestamp=T0,
                  uuid=str(uuid.uuid4()), **fields)
    return StoredEvent(event.uuid, "2", serialize_v2_event(event), received_ms=received_ms)


class Clock:
    """A settable clock for the sink's file names."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def jsonl_file(directory: Path, events: List[StoredEvent], started: float = T0 / 1000,
               finished: bool = True) -> JSONLSink:
    """A file of ``events`` written by the real sink (started at ``started``, as its name says)."""
    sink = JSONLSink(str(directory), fsync=False, clock=Clock(started))
    sink.store("v2", events)
    if finished:
        sink.close()
    return sink


def tail(*flags: str) -> Tuple[int, List[Dict[str, Any]]]:
    """Run the tail in this process; its exit status and the JSON objects it printed."""
    out = io.BytesIO()
    status = main(list(flags), out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def jsonl_flags(directory: Path) -> List[str]:
    return ["--sink", "jsonl", "--option", f"jsonl.directory={directory}"]


def actions(printed: List[Dict[str, Any]]) -> List[str]:
    return [p["fields"]["2"] for p in printed]


# -- JSONL ---------------------------------------------------------------------------------


def test_jsonl_default_is_the_last_10_events_in_file_name_order(tmp_path: Path) -> None:
    """Two files of 8: the last 10 are the first file's last 2 and the second's 8."""
    jsonl_file(tmp_path, [v2(n) for n in range(8)], started=T0 / 1000)
    jsonl_file(tmp_path, [v2(n) for n in range(8, 16)], started=T0 / 1000 + 60)
    status, printed = tail(*jsonl_flags(tmp_path))
    assert (0, [f"a{n}" for n in range(6, 16)]) == (status, actions(printed))


def test_jsonl_from_the_beginning_says_file_and_line_of_each_event(tmp_path: Path) -> None:
    """Every event, with its uuid, stream, received time, file and line."""
    events = [v2(n, received_ms=T0 + n) for n in range(3)]
    jsonl_file(tmp_path, events)
    [name] = os.listdir(tmp_path)
    status, printed = tail(*jsonl_flags(tmp_path), "--from-beginning")
    expected = [{"uuid": e.uuid, "stream": "v2", "received_ms": T0 + n,
                 "file": str(tmp_path / name), "line": n + 1} for n, e in enumerate(events)]
    assert (0, expected) == (status, [{k: v for k, v in p.items() if k != "fields"}
                                      for p in printed])


def test_jsonl_fields_are_by_id_without_a_schema(tmp_path: Path) -> None:
    """Without --schema, a v2 event's fields are keyed by their Thrift ids."""
    event = v2(1)
    jsonl_file(tmp_path, [event])
    status, printed = tail(*jsonl_flags(tmp_path))
    assert (0, {"1": "shop", "2": "a1", "3": "cart", "4": T0, "5": event.uuid}) == (
        status, printed[0]["fields"])


def test_jsonl_fields_are_by_name_with_the_schema(tmp_path: Path) -> None:
    """With --schema, by field name, nested structs too."""
    from event_schemas.event.ttypes import User

    event = v2(1, user=User(user_id="t2_1", logged_in=True))
    jsonl_file(tmp_path, [event])
    status, printed = tail(*jsonl_flags(tmp_path), "--schema", SCHEMA)
    assert (0, {"source": "shop", "action": "a1", "noun": "cart", "client_timestamp": T0,
                "uuid": event.uuid, "user": {"user_id": "t2_1", "logged_in": True}}) == (
        status, printed[0]["fields"])


def test_a_v1_event_is_printed_as_its_object(tmp_path: Path) -> None:
    """A legacy event's fields are its JSON object as it arrived."""
    document = {"event_topic": "forum", "event_type": "signup", "event_ts": T0,
                "uuid": str(uuid.uuid4()), "payload": {"user": "x"}}
    sink = JSONLSink(str(tmp_path), fsync=False)
    sink.store("v1", [StoredEvent(document["uuid"], "1", json.dumps(document).encode(),
                                  received_ms=T0)])
    sink.close()
    status, printed = tail(*jsonl_flags(tmp_path))
    assert (0, "v1", document) == (status, printed[0]["stream"], printed[0]["fields"])


def test_a_double_tjson_spells_nan_is_printed_as_that_string(tmp_path: Path) -> None:
    """"NaN" and "-Infinity" stay strings: JSON has no such numbers."""
    raw = b'{"1":{"str":"shop"},"5":{"str":"%s"},"11":{"dbl":"NaN"},"12":{"dbl":"-Infinity"}}'
    event_uuid = str(uuid.uuid4())
    jsonl_file(tmp_path, [StoredEvent(event_uuid, "2", raw % event_uuid.encode(),
                                      received_ms=T0)])
    status, printed = tail(*jsonl_flags(tmp_path))
    assert (0, {"1": "shop", "5": event_uuid, "11": "NaN", "12": "-Infinity"}) == (
        status, printed[0]["fields"])


def test_last_n_reaches_back_across_files(tmp_path: Path) -> None:
    """--last 5 over files of 2, 2 and 2 events: the last 5, in order."""
    for number in range(3):
        jsonl_file(tmp_path, [v2(2 * number), v2(2 * number + 1)],
                   started=T0 / 1000 + 60 * number)
    status, printed = tail(*jsonl_flags(tmp_path), "--last", "5")
    assert (0, ["a1", "a2", "a3", "a4", "a5"], [2, 1, 2, 1, 2]) == (
        status, actions(printed), [p["line"] for p in printed])


def test_limit_stops_after_n_events(tmp_path: Path) -> None:
    """--from-beginning --limit 3 prints the first 3."""
    jsonl_file(tmp_path, [v2(n) for n in range(10)])
    status, printed = tail(*jsonl_flags(tmp_path), "--from-beginning", "--limit", "3")
    assert (0, ["a0", "a1", "a2"]) == (status, actions(printed))


def test_part_files_are_not_read_unless_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file still being written (.part) is left out by default, and that is said."""
    jsonl_file(tmp_path, [v2(0)])
    sink = jsonl_file(tmp_path, [v2(1)], started=T0 / 1000 + 60, finished=False)
    with caplog.at_level(logging.INFO):
        status, printed = tail(*jsonl_flags(tmp_path), "--from-beginning")
    sink.close()
    assert (0, ["a0"]) == (status, actions(printed))
    assert ["jsonl: 1 file(s) still being written (.jsonl.part) not read; --pending reads "
            "their whole lines too"] == [r.getMessage() for r in caplog.records]


def test_pending_reads_whole_lines_of_part_files_marked_pending(tmp_path: Path) -> None:
    """--pending: a .part file's whole lines, "pending": true; its half line is not read."""
    jsonl_file(tmp_path, [v2(0)])
    sink = jsonl_file(tmp_path, [v2(1), v2(2)], started=T0 / 1000 + 60, finished=False)
    [part] = [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    with open(tmp_path / part, "ab") as f:
        f.write(b'{"uuid":"half a line')
    status, printed = tail(*jsonl_flags(tmp_path), "--from-beginning", "--pending")
    sink.close()
    assert (0, ["a0", "a1", "a2"], [None, True, True]) == (
        status, actions(printed), [p.get("pending") for p in printed])


def test_merge_orders_events_of_several_files_by_received_time(tmp_path: Path) -> None:
    """Two workers' files interleaved in time: --merge prints them in received order."""
    jsonl_file(tmp_path, [v2(0, T0), v2(2, T0 + 2), v2(4, T0 + 4)], started=T0 / 1000)
    jsonl_file(tmp_path, [v2(1, T0 + 1), v2(3, T0 + 3)], started=T0 / 1000 + 1)
    status, printed = tail(*jsonl_flags(tmp_path), "--from-beginning", "--merge")
    assert (0, ["a0", "a1", "a2", "a3", "a4"]) == (status, actions(printed))


def test_merge_with_last_is_the_last_n_in_received_time(tmp_path: Path) -> None:
    """--merge --last 3 over two interleaved files: the 3 received last."""
    jsonl_file(tmp_path, [v2(0, T0), v2(2, T0 + 2), v2(4, T0 + 4)], started=T0 / 1000)
    jsonl_file(tmp_path, [v2(1, T0 + 1), v2(3, T0 + 3)], started=T0 / 1000 + 1)
    status, printed = tail(*jsonl_flags(tmp_path), "--last", "3", "--merge")
    assert (0, ["a2", "a3", "a4"]) == (status, actions(printed))


def test_a_line_that_is_not_the_sinks_is_named_and_the_rest_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged line: a warning naming file and line, exit 1, the other events printed."""
    jsonl_file(tmp_path, [v2(0), v2(1)])
    [name] = os.listdir(tmp_path)
    path = tmp_path / name
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b'{"uuid":"x"}\n' + lines[1])
    with caplog.at_level(logging.WARNING):
        status, printed = tail(*jsonl_flags(tmp_path), "--from-beginning")
    assert (1, ["a0", "a1"]) == (status, actions(printed))
    assert [f"jsonl: {path}:2: not a line of the jsonl sink: Object missing required field "
            "`stream`"] == [r.getMessage() for r in caplog.records]


def test_an_event_the_schema_cannot_read_is_printed_with_the_error(tmp_path: Path) -> None:
    """Another schema than the collector's: the event, its error and its JSON; never skipped."""
    raw = b'{"1":{"i32":7},"5":{"str":"%s"}}'
    event_uuid = str(uuid.uuid4())
    jsonl_file(tmp_path, [StoredEvent(event_uuid, "2", raw % event_uuid.encode(),
                                      received_ms=T0)])
    status, printed = tail(*jsonl_flags(tmp_path), "--schema", SCHEMA)
    with pytest.raises(ValueError) as collectors:  # what the collector's reader says of it
        _ = StoredEvent(event_uuid, "2", raw % event_uuid.encode(),
                        schema=struct_shape(Event)).named
    assert (0, f"cannot read the event: {collectors.value}",
            (raw % event_uuid.encode()).decode()) == (
        status, printed[0]["error"], printed[0]["event"])


def test_a_symbolic_link_among_the_files_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A *.jsonl that is a symlink (planted to read elsewhere) is named and not read."""
    jsonl_file(tmp_path, [v2(0)])
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.jsonl"
    elsewhere.write_bytes(b"secret\n")
    (tmp_path / "v2-zzz.jsonl").symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING):
        status, printed = tail(*jsonl_flags(tmp_path))
    assert (0, ["a0"]) == (status, actions(printed))
    assert [f"jsonl: refused {tmp_path / 'v2-zzz.jsonl'}: a symbolic link"] == [
        r.getMessage() for r in caplog.records]


@needs_root
def test_a_file_of_another_user_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A *.jsonl another user planted in the directory is named and not read."""
    jsonl_file(tmp_path, [v2(0)])
    jsonl_file(tmp_path, [v2(1)], started=T0 / 1000 + 60)
    planted = sorted(tmp_path.iterdir())[-1]
    uid = throwaway_uid()
    os.chown(planted, uid, -1)
    with caplog.at_level(logging.WARNING):
        status, printed = tail(*jsonl_flags(tmp_path))
    assert (0, ["a0"]) == (status, actions(printed))
    assert [f"jsonl: refused {planted}: it belongs to {owner_name(uid)}, not to the "
            f"directory's owner {owner_name(os.geteuid())}"] == [
        r.getMessage() for r in caplog.records]


def test_a_missing_directory_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No such directory: exit 1, one line naming the option and the path."""
    status, printed = tail(*jsonl_flags(tmp_path / "nope"))
    assert (1, []) == (status, printed)
    assert (f"baseplate-events-tail: jsonl.directory: cannot read {tmp_path / 'nope'}: "
            "No such file or directory\n") == capsys.readouterr().err


def follow(reader: Any, request: TailRequest) -> Tuple[Iterator[Optional[TailedEvent]],
                                                       threading.Event]:
    stop = threading.Event()
    return reader.events(request, stop), stop


def until_caught_up(events: Iterator[Optional[TailedEvent]]) -> List[TailedEvent]:
    found: List[TailedEvent] = []
    for event in events:
        if event is CAUGHT_UP:
            return found
        found.append(event)
    return found


def test_follow_reads_lines_added_to_a_part_file_and_new_files(tmp_path: Path) -> None:
    """--follow: lines a live writer appends, then a file started later, as they come."""
    sink = JSONLSink(str(tmp_path), fsync=False, clock=Clock(T0 / 1000))
    sink.store("v2", [v2(0)])
    events, stop = follow(JSONLReader(str(tmp_path), poll=0.01),
                          TailRequest(last=None, follow=True))
    first = until_caught_up(events)
    sink.store("v2", [v2(1), v2(2)])
    second = until_caught_up(events)
    sink.close()
    jsonl_file(tmp_path, [v2(3)], started=T0 / 1000 + 60)
    third = until_caught_up(events)
    stop.set()
    assert [["a0"], ["a1", "a2"], ["a3"]] == [
        [json.loads(e.raw)["2"]["str"] for e in batch] for batch in (first, second, third)]
    assert [[(1, True)], [(2, True), (3, True)], [(1, False)]] == [
        [(e.position.line, e.position.pending) for e in batch]  # type: ignore[union-attr]
        for batch in (first, second, third)]


def test_follow_after_a_cut_back_part_file_reads_on_at_the_right_line(tmp_path: Path) -> None:
    """A .part cut back (a failed write) then written again: the new line's number is right."""
    sink = JSONLSink(str(tmp_path), fsync=False, clock=Clock(T0 / 1000))
    sink.store("v2", [v2(0), v2(1)])
    events, stop = follow(JSONLReader(str(tmp_path), poll=0.01),
                          TailRequest(last=None, follow=True))
    until_caught_up(events)
    [part] = list(tmp_path.iterdir())
    os.truncate(part, len(part.read_bytes().splitlines(keepends=True)[0]))
    sink._files["v2"].size = os.path.getsize(part)  # the sink cut it back itself
    sink.store("v2", [v2(2)])
    again = until_caught_up(events)
    stop.set()
    sink.close()
    assert [("a2", 2)] == [(json.loads(e.raw)["2"]["str"], e.position.line)  # type: ignore
                           for e in again]


def test_follow_does_not_print_a_part_file_again_once_finished(tmp_path: Path) -> None:
    """The rename of .part to .jsonl is followed by inode: its lines come once."""
    sink = JSONLSink(str(tmp_path), fsync=False, clock=Clock(T0 / 1000))
    sink.store("v2", [v2(0)])
    events, stop = follow(JSONLReader(str(tmp_path), poll=0.01),
                          TailRequest(last=None, follow=True))
    until_caught_up(events)
    sink.close()
    jsonl_file(tmp_path, [v2(1)], started=T0 / 1000 + 60)
    later = until_caught_up(events)
    stop.set()
    assert ["a1"] == [json.loads(e.raw)["2"]["str"] for e in later]


# -- SQLite --------------------------------------------------------------------------------


def sqlite_db(path: Path, events: List[StoredEvent]) -> SQLiteSink:
    sink = SQLiteSink(str(path))
    sink.store("v2", events)
    return sink


def sqlite_flags(path: Path) -> List[str]:
    return ["--sink", "sqlite", "--option", f"sqlite.path={path}"]


def test_sqlite_prints_the_last_10_rows_of_the_events_table(tmp_path: Path) -> None:
    """The table the page reads: the last 10 rows, oldest first, with row and receipts."""
    events = [v2(n) for n in range(12)]
    sink = sqlite_db(tmp_path / "e.db", events)
    sink.store("v2", [events[11]])  # delivered twice
    status, printed = tail(*sqlite_flags(tmp_path / "e.db"))
    sink.close()
    assert (0, [f"a{n}" for n in range(2, 12)], list(range(3, 13)), [1] * 9 + [2]) == (
        status, actions(printed), [p["row"] for p in printed], [p["receipts"] for p in printed])


def test_sqlite_from_the_beginning_prints_every_row(tmp_path: Path) -> None:
    """--from-beginning: every event stored, in the order stored."""
    sink = sqlite_db(tmp_path / "e.db", [v2(n) for n in range(15)])
    status, printed = tail(*sqlite_flags(tmp_path / "e.db"), "--from-beginning")
    sink.close()
    assert (0, [f"a{n}" for n in range(15)]) == (status, actions(printed))


def test_sqlite_follow_prints_rows_stored_later(tmp_path: Path) -> None:
    """--follow: rows inserted after the start come as they are committed."""
    sink = sqlite_db(tmp_path / "e.db", [v2(0)])
    events, stop = follow(SQLiteReader(str(tmp_path / "e.db"), poll=0.01),
                          TailRequest(last=None, follow=True))
    first = until_caught_up(events)
    sink.store("v2", [v2(1), v2(2)])
    second = until_caught_up(events)
    stop.set()
    sink.close()
    assert [["a0"], ["a1", "a2"]] == [[json.loads(e.raw)["2"]["str"] for e in batch]
                                      for batch in (first, second)]


def test_a_missing_database_is_an_error_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No database at sqlite.path: exit 1 naming it; the tail creates nothing."""
    status, printed = tail(*sqlite_flags(tmp_path / "none.db"))
    assert (1, [], []) == (status, printed, os.listdir(tmp_path))
    assert (f"baseplate-events-tail: sqlite.path: cannot open {tmp_path / 'none.db'} "
            "read-only: unable to open database file (is it the collector's sqlite.path, and "
            "may this user read it and its directory?)\n") == capsys.readouterr().err


def test_sqlite_without_a_path_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sqlite.path and no $STATE_DIRECTORY: exit 2 naming the option and the fix."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--sink", "sqlite"], io.BytesIO())
    assert 2 == exit_.value.code
    assert capsys.readouterr().err.endswith(
        "error: sqlite.path: required: the collector answers 200 only for events on disk, and "
        "$STATE_DIRECTORY is not set; give the database file, e.g. --option "
        "sqlite.path=/var/lib/baseplate-events/events.sqlite3\n")


def test_sqlite_in_memory_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """sqlite.path = :memory: names no database the tail could read: exit 2 saying why."""
    with pytest.raises(SystemExit) as exit_:
        main(["--sink", "sqlite", "--option", "sqlite.path=:memory:"], io.BytesIO())
    assert 2 == exit_.value.code
    assert capsys.readouterr().err.endswith(
        "error: sqlite.path: a :memory: database lives only inside the collector's process; "
        "give its database file, e.g. --option "
        "sqlite.path=/var/lib/baseplate-events/events.sqlite3\n")


def test_sqlite_without_a_path_reads_the_collectors_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sqlite.path: $STATE_DIRECTORY/events.sqlite3, where the collector keeps it."""
    sink = sqlite_db(tmp_path / "events.sqlite3", [v2(0)])
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    status, printed = tail("--sink", "sqlite")
    sink.close()
    assert (0, ["a0"]) == (status, actions(printed))


# -- the command line and the table ---------------------------------------------------------


def test_a_collectors_command_line_works_unchanged(tmp_path: Path) -> None:
    """The collector's serving flags and keys are taken, and need no secret."""
    sink = sqlite_db(tmp_path / "e.db", [v2(0)])
    status, printed = tail("--port", "8080", "--key", "demo=c2VjcmV0", "--publisher-config",
                           str(tmp_path / "unreadable.ini"), "--threads", "4",
                           *sqlite_flags(tmp_path / "e.db"))
    sink.close()
    assert (0, ["a0"]) == (status, actions(printed))


def test_merge_is_refused_for_another_sink(capsys: pytest.CaptureFixture[str]) -> None:
    """--merge orders JSONL files only: with --sink sqlite it is a usage error."""
    with pytest.raises(SystemExit) as exit_:
        main(["--sink", "sqlite", "--option", "sqlite.path=x", "--merge"], io.BytesIO())
    assert 2 == exit_.value.code
    assert capsys.readouterr().err.endswith("error: --merge: only for --sink jsonl\n")


def test_the_table_is_aligned_and_newest_last(tmp_path: Path) -> None:
    """--format table: a heading and one row per event, by received time, in columns."""
    early, late = v2(0, T0), v2(1, T0 + 1500)
    jsonl_file(tmp_path, [late], started=T0 / 1000)
    jsonl_file(tmp_path, [early], started=T0 / 1000 + 60)
    out = io.BytesIO()
    status = main([*jsonl_flags(tmp_path), "--format", "table", "--schema", SCHEMA], out)
    lines = out.getvalue().decode().splitlines()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 // 1000))
    assert 0 == status
    assert ["RECEIVED", "(UTC)", "STREAM", "UUID", "WHERE", "FIELDS"] == lines[0].split()
    assert lines[1].startswith(f"{stamp}.000  v2      {early.uuid}  "), lines
    assert [lines[0].index("FIELDS")] * 2 == [lines[1].index('{"source"'),
                                             lines[2].index('{"source"')]
    assert '"action":"a1"' in lines[2]


# -- who may read: the collector's user, or its group ------------------------------------------


def group_readable_directory(events: List[StoredEvent]) -> Tuple[Path, int]:
    """A JSONL directory with jsonl.mode 0640 under a fresh /tmp directory anyone may
    traverse, its group a throwaway gid: (the directory, the gid)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="bpe-tail-", dir="/tmp"))
    os.chmod(base, 0o711)
    directory = base / "events"
    sink = JSONLSink(str(directory), fsync=False, mode=0o640)
    sink.store("v2", events)
    sink.close()
    gid = throwaway_uid()
    for path in [directory, *directory.iterdir()]:
        os.chown(path, -1, gid)
    os.chmod(directory, 0o2750)  # as the sink makes it: chown took the setgid bit away
    return directory, gid


def read_as(uid: int, gid: int, directory: Path) -> Any:
    """What the tail prints (or the error it gives) run as ``uid``:``gid``."""
    def work() -> Any:
        out = io.BytesIO()
        err = io.StringIO()
        import contextlib

        with contextlib.redirect_stderr(err):
            status = main(jsonl_flags(directory), out)
        return [status, [json.loads(line)["uuid"] for line in out.getvalue().splitlines()],
                err.getvalue()]

    from tests.support.users import run_as

    return run_as(uid, gid, work)


@pytest.mark.system  # forks as another user
@needs_root
def test_a_member_of_the_collectors_group_reads_its_files() -> None:
    """jsonl.mode 0640: another user in the directory's group reads every event."""
    import shutil

    events = [v2(0), v2(1)]
    directory, gid = group_readable_directory(events)
    try:
        result = read_as(throwaway_uid(), gid, directory)
    finally:
        shutil.rmtree(directory.parent)
    assert [0, [e.uuid for e in events], ""] == result


@pytest.mark.system  # forks as another user
@needs_root
def test_a_user_outside_the_group_is_told_who_may_read() -> None:
    """Neither the collector's user nor in its group: exit 1 naming the directory and the fix."""
    import shutil

    directory, gid = group_readable_directory([v2(0)])
    try:
        result = read_as(throwaway_uid(), throwaway_uid(), directory)
    finally:
        shutil.rmtree(directory.parent)
    assert [1, [], f"baseplate-events-tail: jsonl.directory: cannot list {directory}: "
            "permission denied; run the tail as the collector's user or in its group "
            "(jsonl.mode)\n"] == result


def test_a_fifo_among_the_files_is_refused_without_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A *.jsonl that is a FIFO (which would block a reader for ever) is named and skipped."""
    jsonl_file(tmp_path, [v2(0)])
    os.mkfifo(tmp_path / "v2-zzz.jsonl", 0o600)
    with caplog.at_level(logging.WARNING):
        status, printed = tail(*jsonl_flags(tmp_path))
    assert (0, ["a0"]) == (status, actions(printed))
    assert [f"jsonl: refused {tmp_path / 'v2-zzz.jsonl'}: it is not a regular file"] == [
        r.getMessage() for r in caplog.records]
