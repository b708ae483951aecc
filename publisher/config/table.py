"""The publisher's settings: every key of ``[event-publisher:NAME]``, its check and its default.

:data:`PUBLISHER_SETTINGS` is the one table (the settings docs are generated
from it); :mod:`publisher.config.parse` reads a section against it.
"""

import base64
import binascii
import os
import re
import ssl
from typing import Any, Callable, FrozenSet, Mapping, Optional, Tuple

from baseplate_events import validation
from baseplate_events.errors import ConfigError
from baseplate_events.runtime.event_queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE
from baseplate_events.setting_table import Setting, SettingTable


MAX_BATCH_BYTES = 500 * 1024
VERSIONS = ("1", "2", "2j")

#: ``${NAME}`` in a value: replaced from the environment.
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

def legacy_spool_path(queue_name: str) -> str:
    """``/var/tmp/baseplate-events-<uid>/<queue name>``: survives reboots, private to the user."""
    return os.path.join("/var/tmp", f"baseplate-events-{os.getuid()}", queue_name)


def default_spool_path(queue_name: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """``$STATE_DIRECTORY/<queue name>`` under systemd (``StateDirectory=``), else
    :func:`legacy_spool_path`."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    return os.path.join(state, queue_name) if state else legacy_spool_path(queue_name)


def expand_env(key: str, value: str, environ: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` from ``environ``.

    :raises ConfigError: a variable is not set.
    """

    def replace(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(key, f"environment variable {name} is not set")
        return environ[name]

    return ENV_REFERENCE.sub(replace, value)


# The kinds of value the apps' settings read too come from the one shared set
# (baseplate_events.validation), so that "yes", "0660" or "host:port" mean the
# same on both sides; here under the names the parser below uses.
_string = validation.string
_positive_int = validation.positive_int
_seconds = validation.seconds
_positive_seconds = validation.positive_seconds
_mode = validation.mode
_int_in = validation.int_in
_endpoint = validation.host_port


def _hostname(key: str, value: str) -> str:
    if any(c in "/@?#" or c.isspace() for c in value):
        raise ConfigError(
            key,
            f"expected a host name with an optional :port (no scheme, user or path), got {value!r}",
        )
    host, sep, port = value.rpartition(":")
    if sep and not host.endswith("]") and ":" not in host:
        validation.port(key, port)
    return value


def _success_statuses(key: str, value: str) -> FrozenSet[int]:
    """``200,202,204``: statuses from 200 to 299; or ``2xx``, any status below 400."""
    if value.strip().lower() == "2xx":
        return frozenset(range(200, 400))
    statuses = set()
    for word in value.split(","):
        word = word.strip()
        if not (word.isascii() and word.isdigit() and 200 <= int(word) <= 299):
            raise ConfigError(
                key,
                f"expected statuses from 200 to 299 separated by commas (default "
                f"200,202,204), or 2xx for any status below 400, got {value!r}",
            )
        statuses.add(int(word))
    return frozenset(statuses)


def _scheme(key: str, value: str) -> str:
    return validation.choice(key, value, ("http", "https"))


def _version(key: str, value: str) -> str:
    return validation.choice(key, value, VERSIONS)


def _listen_address(key: str, value: str) -> Tuple[str, int]:
    """``host:port`` to listen on; port 0 picks a free port (logged at start-up)."""
    return validation.host_port(key, value, lowest_port=0, what="host:port to listen on")


def _boolean(key: str, value: str) -> bool:
    return validation.boolean(key, value, expected="true or false")


def _switch(key: str, value: str) -> bool:
    return validation.boolean(key, value, expected="on or off")


def _fsync(key: str, value: str) -> str:
    return validation.choice(key, value, ("always", "interval", "never"))


def _key_name(key: str, value: str) -> str:
    # It travels in "X-Signature: key=NAME, mac=..."; keep that header unambiguous.
    if not (value.isascii() and value.isprintable()) or any(
        c.isspace() or c == "," for c in value
    ):
        raise ConfigError(
            key, f"expected a name of printable ASCII without spaces or commas, got {value!r}"
        )
    return value


def base64_secret(key: str, value: str) -> bytes:
    try:
        secret = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        # Never echo the value: it is (meant to be) a secret.
        raise ConfigError(key, "not valid base64") from None
    if not secret:
        raise ConfigError(key, "decodes to an empty secret")
    return secret


def _ca_file(key: str, value: str) -> str:
    """A readable PEM bundle (checked now, so that a typo stops the start, not every POST)."""
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot read {value!r}: {exc.strerror}") from None
    except ValueError:  # a NUL byte, which no path can hold
        raise ConfigError(key, f"cannot read {value!r}: not a valid path") from None
    try:
        ssl.create_default_context(cafile=value)
    except ssl.SSLError:
        raise ConfigError(
            key, f"no certificate in {value!r}: expected PEM (-----BEGIN CERTIFICATE-----)"
        ) from None
    return value


def _batch_bytes(key: str, value: str) -> int:
    number = _positive_int(key, value)
    if number < 64:
        raise ConfigError(key, f"expected at least 64, got {number}")
    return number


#: A setting that must be given: reading the section without it is an error.
REQUIRED: Any = object()


def _spool_default(queue_name: str, env: Mapping[str, str], values: Mapping[str, Any]) -> str:
    return default_spool_path(queue_name, env)


def _in_spool(name: str) -> Callable[[str, Mapping[str, str], Mapping[str, Any]], str]:
    def default(queue_name: str, env: Mapping[str, str], values: Mapping[str, Any]) -> str:
        return os.path.join(values["spool.path"], name)

    return default


#: Settings whose default is worked out from the queue's name, the environment
#: or the settings read before them.
WORKED_OUT = {
    "spool.path": _spool_default,
    "dead_letter.path": _in_spool("dead-letter.jsonl"),
    "health.path": _in_spool("health.json"),
}

#: Read together by :mod:`publisher.config.parse` (one or the other), not one by one.
SECRET_KEYS = ("key.secret", "key.secret_file")

_SECONDS_ABOVE_0 = "seconds, > 0"
_BYTES = "positive integer (bytes)"

#: Every key of an ``[event-publisher:NAME]`` section, in the order they are
#: read (so that of several bad keys the same one is always reported).
PUBLISHER_SETTINGS = SettingTable("publisher", [
    Setting("collector.hostname", _hostname, REQUIRED,
            "Host of the collector, optionally with a port; no scheme, path, ``user@``, ``?`` or "
            "``#``.",
            "``host`` or ``host:port``", default_text="required", group="collector"),
    Setting("collector.scheme", _scheme, "https",
            "TLS certificates are always verified, against requests' CA bundle (certifi) or "
            ":confval:`collector.ca_file`; there is no way to turn that off.",
            "``http`` or ``https``", group="collector"),
    Setting("collector.version", _version, "2",
            "The batch format and the path it is posted to.",
            "``1``, ``2`` or ``2j``", group="collector"),
    Setting("collector.timeout", _positive_seconds, 3.0,
            "How long one whole POST may take: connecting, sending and the answer.",
            _SECONDS_ABOVE_0, group="collector"),
    Setting("collector.ca_file", _ca_file, None,
            "The CA certificates to check the collector's certificate (and an ``https://`` "
            "proxy's) against, for a private CA.",
            "path to a PEM bundle", default_text="unset (requests' bundle, certifi)",
            group="collector"),
    Setting("collector.gzip_level", _int_in(1, 9), 6,
            "The gzip level of the body (libdeflate's; see :doc:`performance` for the measured "
            "trade-off).", "1-9", group="collector"),
    Setting("collector.success_statuses", _success_statuses, frozenset({200, 202, 204}),
            "The statuses that deliver a batch (see :ref:`answers`).",
            "statuses from 200 to 299, comma-separated, or ``2xx``",
            default_text="``200,202,204``", group="collector"),
    Setting("collector.accept_html", _boolean, False,
            "Whether an answer with a success status and a ``text/html`` body delivers.",
            "``true`` or ``false``", group="collector"),
    Setting("key.name", _key_name, REQUIRED,
            "The signing key's name, sent in ``X-Signature``.",
            "printable ASCII, no spaces or commas", default_text="required", group="key"),
    Setting("key.secret", base64_secret, None,
            "The key, in base64.",
            "base64", default_text="required, unless key.secret_file is set", group="key"),
    Setting("key.secret_file", _string, None,
            "A file holding the base64 key, for secret stores.",
            "path", default_text="unset", group="key"),
    Setting("metrics.endpoint", _endpoint, None,
            "A statsd server; without it nothing is sent, though every counter is still kept for "
            "the health report.",
            "``host:port`` (``[::1]:8125`` for IPv6)", default_text="unset (off)",
            group="metrics"),
    Setting("metrics.namespace", _string, "",
            "Prefix of every metric name.", "string", default_text="empty", group="metrics"),
    Setting("metrics.prometheus", _listen_address, None,
            "Serve the same metrics on ``http://host:port/metrics`` for Prometheus, with "
            "``prometheus_client`` (in the ``publisher`` extra); port ``0`` picks a free one.",
            "``host:port`` to listen on", default_text="unset (off)", group="metrics"),
    Setting("max_queue_size", _positive_int, MAX_QUEUE_SIZE,
            "Queue capacity in messages, if the publisher creates the queue.",
            "positive integer", group="queue"),
    Setting("max_event_size", _positive_int, MAX_EVENT_SIZE,
            "Largest message, if the publisher creates the queue.", _BYTES, group="queue"),
    Setting("queue.mode", _mode, 0o600,
            "Permission bits of a queue the publisher creates; ``0660`` to share it with a group "
            "(:ref:`security`).",
            "octal mode", default_text="``0600``", group="queue"),
    Setting("drain.max_messages", _positive_int, 1000,
            "Most events held in the landing zone before they are spooled together (without the "
            "landing zone: per wake-up, at most the queue's capacity).",
            "positive integer", group="drain"),
    Setting("drain.landing", _switch, True,
            "Receive straight into a file-backed page (:ref:`landing-zone`); ``off`` trades that "
            "for a little speed.",
            "``on`` or ``off``", default_text="``on``", group="drain"),
    # 0 since the sender speaks requests: a niced thread that runs Python (and so
    # holds the GIL) gets preempted holding it and stalls the intake loop too;
    # median of 8 interleaved bench runs, 179k ev/s at 10 against 285k at 0.
    Setting("sender.nice", _int_in(0, 19), 0,
            "How much nicer (lower priority) the sender thread runs than the intake loop (Linux "
            "only).",
            "0-19", default_text="``0`` (off)", group="drain"),
    Setting("batch.max_bytes", _batch_bytes, MAX_BATCH_BYTES,
            "Largest batch (500 KiB), counted as baseplate counts it: the format's overhead plus "
            "each event and its comma.",
            "integer >= 64", group="batch"),
    Setting("batch.max_wait", _seconds, 1.0,
            "How long a batch waits for more events after its first one arrived.",
            "seconds", group="batch"),
    Setting("retry.backoff_initial", _positive_seconds, 1.0,
            "First retry delay; it doubles each retry, with jitter (each delay is between half "
            "and all of the current ceiling).",
            _SECONDS_ABOVE_0, group="batch"),
    Setting("retry.backoff_max", _positive_seconds, 60.0,
            "Longest retry delay.", "seconds, >= retry.backoff_initial", group="batch"),
    Setting("retry.retry_after_max", _seconds, 300.0,
            "Cap on a collector's ``Retry-After`` (which is honoured, at least 0.1 s).",
            "seconds", group="batch"),
    Setting("retry.bisect_after_5xx", _int_in(1, 1000), 3,
            "How many times in a row the same body may draw a 500 before the publisher bisects "
            "the batch, as for a 422.",
            "1-1000", group="batch"),
    Setting("shutdown.deadline", _seconds, 10.0,
            "How long to keep sending after SIGTERM or SIGINT (:ref:`signals`).",
            "seconds", group="batch"),
    Setting("spool.path", _string, None,
            "The spool directory (mode 0700, one publisher each; a relative path is relative to "
            "the working directory).",
            "directory",
            default_text="``$STATE_DIRECTORY/<queue>`` under systemd, else "
                         "``/var/tmp/baseplate-events-<uid>/<queue>``",
            group="spool"),
    Setting("spool.max_bytes", _positive_int, 1 << 30,
            "The spool's budget; beyond it the oldest events are dropped, counted and logged.",
            _BYTES, default_text="``1073741824`` (1 GiB)", group="spool"),
    Setting("spool.segment_bytes", _positive_int, 8 << 20,
            "Size at which a spool file is rotated.",
            _BYTES, default_text="``8388608`` (8 MiB)", group="spool"),
    Setting("spool.fsync", _fsync, "interval",
            "When the spool is synced to disk.",
            "``always``, ``interval`` or ``never``", group="spool"),
    Setting("spool.fsync_interval", _seconds, 1.0,
            "Seconds between syncs with ``spool.fsync = interval``.", "seconds", group="spool"),
    Setting("dead_letter.path", _string, None,
            "Events the collector refused, one JSON line each (:ref:`dead-letters`).",
            "path", default_text="``<spool.path>/dead-letter.jsonl``", group="spool"),
    Setting("dead_letter.max_bytes", _positive_int, 100 << 20,
            "The dead-letter file's budget: refused events that would take it past this are "
            "dropped, counted (:metric:`dead_letter.dropped`) and logged.",
            _BYTES, default_text="``104857600`` (100 MiB)", group="spool"),
    Setting("health.path", _string, None,
            "The health file, rewritten every :confval:`health.interval`.",
            "path", default_text="``<spool.path>/health.json``", group="health"),
    Setting("health.interval", _positive_seconds, 5.0,
            "Seconds between health file updates.", _SECONDS_ABOVE_0, group="health"),
    Setting("health.log_interval", _seconds, 60.0,
            "Seconds between health lines in the log; ``0``: never.",
            "seconds", group="health"),
])

#: Every key the publisher understands; anything else in the section is reported.
KNOWN_KEYS = frozenset(PUBLISHER_SETTINGS.names)
