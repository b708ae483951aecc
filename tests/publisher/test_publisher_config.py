"""Publisher configuration: defaults, ${ENV} expansion, and one clear line per bad key."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Callable, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baseplate_events.errors import ConfigError
from publisher.config.parse import load, parse_section
from publisher.config.table import KNOWN_KEYS

from tests.support.collector import LocalCollector
from tests.support.http import PrivateCA
from tests.support.publisher import SECRET, PublisherProcess, run_publisher, write_config

MINIMAL = {
    "collector.hostname": "collector.example.com",
    "key.name": "TestKey",
    "key.secret": base64.b64encode(b"hunter2").decode(),
}


def error_of(raw: Dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_section("q", raw, environ={})
    return str(info.value)


def test_defaults():
    """A seed-style section gets baseplate's defaults: https, version 2, 10000 x 102400."""
    cfg = parse_section("q", dict(MINIMAL), environ={})
    assert "https://collector.example.com/v2" == cfg.collector.url
    assert (10000, 102400) == (cfg.queue.max_queue_size, cfg.queue.max_event_size)
    assert (512000, 1.0) == (cfg.batch.max_bytes, cfg.batch.max_wait)
    assert b"hunter2" == cfg.key.secret
    assert 0o600 == cfg.queue.mode
    assert cfg.metrics.endpoint is None


def test_env_expansion():
    """${NAME} in a value comes from the environment."""
    raw = dict(MINIMAL, **{"collector.hostname": "${HOST}", "key.secret": "${SECRET}"})
    cfg = parse_section("q", raw, environ={"SECRET": "aHVudGVyMg==", "HOST": "h.example:8080"})
    assert ("h.example:8080", b"hunter2") == (cfg.collector.hostname, cfg.key.secret)


def test_unset_env_var():
    """An unset ${NAME} names the key and the variable."""
    raw = dict(MINIMAL, **{"key.name": "${NOPE}"})
    assert "key.name: environment variable NOPE is not set" == error_of(raw)


def test_missing_hostname():
    """A missing collector.hostname is named."""
    raw = dict(MINIMAL)
    del raw["collector.hostname"]
    assert "collector.hostname: required but not set" == error_of(raw)


def test_secret_not_base64_is_not_echoed():
    """A key.secret that is not base64 is reported without printing it."""
    assert "key.secret: not valid base64" == error_of(dict(MINIMAL, **{"key.secret": "s3cr*t!"}))


def test_bad_version():
    """collector.version must be 1, 2 or 2j."""
    expected = "collector.version: expected 1, 2 or 2j, got '3'"
    assert expected == error_of(dict(MINIMAL, **{"collector.version": "3"}))


def test_non_numeric_size():
    """A size that is not a number is named with its value."""
    expected = "max_queue_size: expected an integer, got 'lots'"
    assert expected == error_of(dict(MINIMAL, max_queue_size="lots"))


def test_integers_in_a_range():
    """gzip level and sender niceness name their range and the value given."""
    cfg = parse_section("q", dict(MINIMAL), environ={})
    assert (6, 0) == (cfg.collector.gzip_level, cfg.sender.nice)
    cfg = parse_section("q", dict(MINIMAL, **{"sender.nice": "10"}), environ={})
    assert 10 == cfg.sender.nice
    assert "sender.nice: expected an integer from 0 to 19, got '-5'" == error_of(
        dict(MINIMAL, **{"sender.nice": "-5"}))
    assert "collector.gzip_level: expected an integer from 1 to 9, got 'max'" == error_of(
        dict(MINIMAL, **{"collector.gzip_level": "max"}))


@pytest.mark.parametrize("name", ["two words", "a,b", "ключ"])
def test_key_name_fits_the_signature_header(name: str):
    """key.name travels in X-Signature: printable ASCII, no spaces or commas."""
    expected = (
        f"key.name: expected a name of printable ASCII without spaces or commas, got {name!r}"
    )
    assert expected == error_of(dict(MINIMAL, **{"key.name": name}))


def test_bad_metrics_endpoint():
    """metrics.endpoint must be host:port."""
    expected = "metrics.endpoint: expected host:port, got 'statsd'"
    assert expected == error_of(dict(MINIMAL, **{"metrics.endpoint": "statsd"}))


def test_secret_file(tmp_path: Path):
    """key.secret_file reads the base64 secret from a file."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("aHVudGVyMg==\n")
    raw = dict(MINIMAL, **{"key.secret_file": str(secret_file)})
    del raw["key.secret"]
    assert b"hunter2" == parse_section("q", raw, environ={}).key.secret


def test_secret_and_secret_file_conflict(tmp_path: Path):
    """Setting both key.secret and key.secret_file is an error."""
    raw = dict(MINIMAL, **{"key.secret_file": str(tmp_path / "x")})
    assert "key.secret: set either key.secret or key.secret_file, not both" == error_of(raw)


def test_repr_hides_the_secret():
    """The config's repr (which may reach a log) never holds the secret."""
    cfg = parse_section("q", dict(MINIMAL), environ={})
    assert "hunter2" not in repr(cfg) and "aHVudGVyMg" not in repr(cfg)


def test_missing_section(tmp_path: Path):
    """A config file without the queue's section says which section it wanted."""
    path = write_config(tmp_path / "c.ini", "other", dict(MINIMAL))
    with pytest.raises(ConfigError) as info:
        load(str(path), "q")
    expected = (
        f"[event-publisher:q]: section not found in {path} (found: [event-publisher:other])"
    )
    assert expected == str(info.value)


@pytest.mark.system
def test_bad_key_exits_2_with_one_line(tmp_path: Path):
    """The real command exits 2 and prints one line naming the key, no traceback."""
    path = write_config(tmp_path / "c.ini", "q", dict(MINIMAL, **{"collector.version": "9"}))
    result = run_publisher("q", path)
    assert 2 == result.returncode
    expected = (
        "baseplate-events-publisher: error: collector.version: expected 1, 2 or 2j, got '9'\n"
    )
    assert expected == result.stderr


@pytest.mark.system
def test_a_typo_is_named_in_the_same_line_as_the_missing_key(tmp_path: Path):
    """colector.hostname: exit 2, one line naming the missing key and the typo beside it."""
    raw = dict(MINIMAL)
    raw["colector.hostname"] = raw.pop("collector.hostname")
    result = run_publisher("q", write_config(tmp_path / "c.ini", "q", raw))
    expected = (
        "baseplate-events-publisher: error: collector.hostname: required but not set; "
        "also unknown key 'colector.hostname' (did you mean collector.hostname?)\n"
    )
    assert (2, expected) == (result.returncode, result.stderr)


def test_every_unknown_key_is_named_beside_an_invalid_one():
    """Two unknown keys, one without a close match, ride along with an invalid value's error."""
    raw = dict(MINIMAL, **{"collector.version": "9", "batch.max_wiat": "1", "colour": "red"})
    expected = (
        "collector.version: expected 1, 2 or 2j, got '9'; also unknown keys "
        "'batch.max_wiat' (did you mean batch.max_wait?), 'colour'"
    )
    assert expected == error_of(raw)


@pytest.mark.system
def test_an_unknown_key_alone_is_a_warning_with_a_suggestion(
    queue_name: str, start_publisher: Callable[..., PublisherProcess]
):
    """Nothing else wrong: the publisher starts and logs the typo with the key it resembles."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"batch.max_wiat": "1"})
        assert 0 == publisher.stop()
    expected = (f"WARNING [event-publisher:{queue_name}]: ignoring unknown key "
                "'batch.max_wiat' (did you mean batch.max_wait?)")
    assert [expected] == [line.split("] ", 1)[1] for line in publisher.log().splitlines()
                          if " WARNING " in line]


def test_prometheus_address_must_be_host_and_port():
    """metrics.prometheus without a port names the key and the form it wants."""
    raw = dict(MINIMAL, **{"metrics.prometheus": "localhost"})
    assert "metrics.prometheus: expected host:port to listen on, got 'localhost'" == error_of(raw)


@pytest.mark.system
def test_default_queue_size_reports_kernel_limits(tmp_path: Path):
    """The default 10000 x 102400 queue is refused on a stock kernel: one line, exit 2."""
    raw = dict(MINIMAL, **{"spool.path": str(tmp_path / "spool")})
    path = write_config(tmp_path / "c.ini", "limits-test-never-created", raw)
    result = run_publisher("limits-test-never-created", path)
    assert 2 == result.returncode
    lines = result.stderr.splitlines()
    assert 1 == len(lines)
    assert lines[0].startswith(
        "baseplate-events-publisher: error: cannot open message queue "
        "/events-limits-test-never-created with 10000 messages of 102400 bytes"
    )
    assert "fs.mqueue.msg_max" in lines[0] and "ulimit -q" in lines[0]
    assert "ask for a smaller queue with max_queue_size and max_event_size" in lines[0]


@settings(max_examples=200, deadline=None)
@given(
    raw=st.dictionaries(
        st.sampled_from(sorted(KNOWN_KEYS)) | st.text(max_size=12),
        st.text(max_size=30),
        max_size=12,
    )
)
def test_fuzzed_sections_parse_or_fail_clearly(raw: Dict[str, str]):
    """Any section either parses or raises ConfigError naming a key; nothing else escapes."""
    try:
        parse_section("q", raw, environ={"HOME": "/home/x"})
    except ConfigError as exc:
        assert exc.key in KNOWN_KEYS
        assert str(exc).startswith(exc.key + ": ")
        assert "\n" not in str(exc)


@pytest.mark.system
def test_unusable_spool_path_exits_2(tmp_path: Path, queue_name: str):
    """A spool.path that cannot be created stops the publisher with one line and status 2."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    raw = dict(
        MINIMAL,
        max_queue_size="10",
        max_event_size="2048",
        **{"spool.path": str(blocker / "spool")},
    )
    path = write_config(tmp_path / "c.ini", queue_name, raw)
    result = run_publisher(queue_name, path)
    assert 2 == result.returncode
    expected = f"baseplate-events-publisher: error: spool.path: {blocker} is not a directory\n"
    assert expected == result.stderr


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(sorted(KNOWN_KEYS - {"key.secret_file"})),
    value=st.text(max_size=40) | st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{0,3})?", fullmatch=True),
)
def test_one_fuzzed_key_in_a_good_section(key: str, value: str):
    """Changing one key of a good section parses, or fails naming that very key."""
    raw = dict(MINIMAL, **{key: value})
    try:
        parse_section("q", raw, environ={})
    except ConfigError as exc:
        related = {key, "key.secret"} if key == "key.secret" else {key, "retry.backoff_max"}
        assert exc.key in related
        assert "\n" not in str(exc)


def test_ca_file_that_does_not_exist(tmp_path: Path):
    """A collector.ca_file that is not there is named with the reason."""
    missing = tmp_path / "nope.pem"
    raw = dict(MINIMAL, **{"collector.ca_file": str(missing)})
    expected = f"collector.ca_file: cannot read '{missing}': No such file or directory"
    assert expected == error_of(raw)


def test_ca_file_that_holds_no_certificate(tmp_path: Path):
    """A collector.ca_file without a PEM certificate in it is refused at start."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    raw = dict(MINIMAL, **{"collector.ca_file": str(bundle)})
    expected = (
        f"collector.ca_file: no certificate in '{bundle}': "
        "expected PEM (-----BEGIN CERTIFICATE-----)"
    )
    assert expected == error_of(raw)


@pytest.mark.system
def test_ca_file_is_kept(tmp_path: Path):
    """A readable PEM bundle is taken as it is; without the key there is none."""
    bundle = PrivateCA(tmp_path / "ca").ca_file
    raw = dict(MINIMAL, **{"collector.ca_file": str(bundle)})
    assert str(bundle) == parse_section("q", raw, environ={}).collector.ca_file
    assert parse_section("q", dict(MINIMAL), environ={}).collector.ca_file is None


@pytest.mark.system
def test_unreadable_ca_file_exits_2_with_one_line(tmp_path: Path):
    """The real command stops with status 2 and one line naming collector.ca_file."""
    raw = dict(MINIMAL, **{"collector.ca_file": str(tmp_path)})
    path = write_config(tmp_path / "c.ini", "q", raw)
    result = run_publisher("q", path)
    assert 2 == result.returncode
    expected = (
        "baseplate-events-publisher: error: collector.ca_file: "
        f"cannot read '{tmp_path}': Is a directory\n"
    )
    assert expected == result.stderr


@pytest.mark.parametrize("value", ["events:pw@collector.example", "collector.example/v2",
                                   "collector.example?x", "https://collector.example"])
def test_hostname_without_user_path_or_scheme(value: str):
    """collector.hostname is a host and port only: credentials or a path would go astray."""
    expected = (
        "collector.hostname: expected a host name with an optional :port "
        f"(no scheme, user or path), got {value!r}"
    )
    assert expected == error_of(dict(MINIMAL, **{"collector.hostname": value}))


def test_refusal_and_dead_letter_keys():
    """retry.bisect_after_5xx (default 3), dead_letter.max_bytes (100 MiB); bad values named."""
    cfg = parse_section("q", dict(MINIMAL), environ={})
    assert (3, 100 << 20) == (cfg.retry.bisect_after_5xx, cfg.dead_letter.max_bytes)
    cfg = parse_section("q", dict(MINIMAL, **{"retry.bisect_after_5xx": "1",
                                              "dead_letter.max_bytes": "4096"}), environ={})
    assert (1, 4096) == (cfg.retry.bisect_after_5xx, cfg.dead_letter.max_bytes)
    assert "retry.bisect_after_5xx: expected an integer from 1 to 1000, got '0'" == error_of(
        dict(MINIMAL, **{"retry.bisect_after_5xx": "0"}))
    assert "dead_letter.max_bytes: expected an integer, got 'lots'" == error_of(
        dict(MINIMAL, **{"dead_letter.max_bytes": "lots"}))


def test_a_ca_file_path_with_a_nul_byte_names_the_key():
    """collector.ca_file holding a NUL byte is a ConfigError naming it, not a ValueError."""
    expected = "collector.ca_file: cannot read 'a\\x00b': not a valid path"
    assert expected == error_of(dict(MINIMAL, **{"collector.ca_file": "a\x00b"}))


def test_success_statuses_default_and_list():
    """collector.success_statuses: 200,202,204 by default, or the statuses listed."""
    default = parse_section("q", dict(MINIMAL), environ={}).collector
    listed = parse_section("q", dict(MINIMAL, **{"collector.success_statuses": "200, 201"}),
                           environ={}).collector
    assert (frozenset({200, 202, 204}), False) == (default.success_statuses, default.accept_html)
    assert frozenset({200, 201}) == listed.success_statuses


def test_success_statuses_2xx_is_baseplates_rule():
    """2xx takes any status below 400, as baseplate 2.7.1 does."""
    cfg = parse_section("q", dict(MINIMAL, **{"collector.success_statuses": "2xx",
                                              "collector.accept_html": "true"}), environ={})
    assert (frozenset(range(200, 400)), True) == (cfg.collector.success_statuses,
                                                  cfg.collector.accept_html)


@pytest.mark.parametrize("value", ["200,404", "ok", "200,,204", "3xx"])
def test_bad_success_statuses(value: str):
    """Anything but statuses 200-299 or 2xx names the key and the expected form."""
    assert (f"collector.success_statuses: expected statuses from 200 to 299 separated by commas "
            f"(default 200,202,204), or 2xx for any status below 400, got {value!r}"
            ) == error_of(dict(MINIMAL, **{"collector.success_statuses": value}))


def test_bad_accept_html():
    """collector.accept_html is true or false."""
    assert "collector.accept_html: expected true or false, got 'maybe'" == error_of(
        dict(MINIMAL, **{"collector.accept_html": "maybe"}))
