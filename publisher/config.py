"""The publisher's configuration: ``[event-publisher:NAME]`` parsed once into frozen objects.

The objects, one per INI section, are :mod:`publisher.sections`'.

Every problem is a :class:`~baseplate_events.errors.ConfigError` naming the
full key and what is wrong, so that ``__main__`` can print it on one line and
exit with status 2. ``${ENV_VAR}`` in a value is replaced from the environment.
"""
from __future__ import annotations

import base64
import binascii
import configparser
import dataclasses
import os
import re
import ssl
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from baseplate_events import validation
from baseplate_events.errors import ConfigError
from baseplate_events.runtime.event_queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE
from baseplate_events.setting_table import Setting, SettingTable

from .secret_permissions import check_secret_file
from .sections import (
    BatchSection,
    CollectorSection,
    DeadLetterSection,
    DrainSection,
    HealthSection,
    KeySection,
    MetricsSection,
    PublisherConfig,
    QueueSection,
    RetrySection,
    SenderSection,
    ShutdownSection,
    SpoolSection,
)

MAX_BATCH_BYTES = 500 * 1024
VERSIONS = ("1", "2", "2j")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

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

    return _ENV.sub(replace, value)


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


def _base64_secret(key: str, value: str) -> bytes:
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
_WORKED_OUT = {
    "spool.path": _spool_default,
    "dead_letter.path": _in_spool("dead-letter.jsonl"),
    "health.path": _in_spool("health.json"),
}

#: Read together by :func:`_secret` (one or the other), not one by one.
_SECRET_KEYS = ("key.secret", "key.secret_file")

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
    Setting("key.secret", _base64_secret, None,
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


def _value(raw: Mapping[str, str], key: str) -> Optional[str]:
    """The key's value, stripped; None when it is not set or empty."""
    value = raw.get(key)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _secret(raw: Mapping[str, str], warnings: List[str]) -> bytes:
    inline = _value(raw, "key.secret")
    path = _value(raw, "key.secret_file")
    if inline is not None and path is not None:
        raise ConfigError("key.secret", "set either key.secret or key.secret_file, not both")
    if path is not None:
        try:
            with open(path, "rb") as f:
                info = os.fstat(f.fileno())
                text = f.read().decode("ascii", "replace")
        except OSError as exc:
            raise ConfigError("key.secret_file", f"cannot read {path!r}: {exc.strerror}") from None
        warning = check_secret_file("key.secret_file", path, info)
        if warning is not None:
            warnings.append(warning)
        return _base64_secret("key.secret_file", text)
    if inline is None:
        raise ConfigError("key.secret", "required but not set (or set key.secret_file)")
    return _base64_secret("key.secret", inline)


def unknown_keys_text(keys: Sequence[str]) -> str:
    """``unknown key 'colector.hostname' (did you mean collector.hostname?)``, for each key."""
    parts = [f"{key!r}{PUBLISHER_SETTINGS.hint(key)}" for key in keys]
    return ("unknown key " if len(parts) == 1 else "unknown keys ") + ", ".join(parts)


def parse_section(
    queue_name: str, raw: Dict[str, str], environ: Optional[Mapping[str, str]] = None
) -> PublisherConfig:
    """Validate one ``[event-publisher:NAME]`` section (already read) into a config.

    :raises ConfigError: a key is missing or invalid; the message names it, and
        with it every unknown key in the section, since a typo there (``colector.hostname``)
        is the usual reason a key is missing.
    """
    try:
        return _parse_known_keys(queue_name, raw, environ)
    except ConfigError as exc:
        unknown = sorted(k for k in raw if k not in KNOWN_KEYS)
        if not unknown:
            raise
        raise ConfigError(exc.key, f"{exc.problem}; also {unknown_keys_text(unknown)}") from None


def _parse_known_keys(
    queue_name: str, raw: Dict[str, str], environ: Optional[Mapping[str, str]]
) -> PublisherConfig:
    env = os.environ if environ is None else environ
    expanded = {k: expand_env(k, v, env) for k, v in raw.items() if k in KNOWN_KEYS}
    warnings: List[str] = []
    v: Dict[str, Any] = {}
    for setting in PUBLISHER_SETTINGS:
        name = setting.name
        if name in _SECRET_KEYS:
            if name == _SECRET_KEYS[0]:
                v[name] = _secret(expanded, warnings)
            continue
        value = _value(expanded, name)
        if value is not None:
            v[name] = setting.parse(name, value)
        elif name in _WORKED_OUT:
            v[name] = _WORKED_OUT[name](queue_name, env, v)
        elif setting.default is REQUIRED:
            raise ConfigError(name, "required but not set")
        else:
            v[name] = setting.default
    if v["retry.backoff_max"] < v["retry.backoff_initial"]:
        raise ConfigError(
            "retry.backoff_max",
            f"must be at least retry.backoff_initial ({v['retry.backoff_initial']:g}), "
            f"got {v['retry.backoff_max']:g}",
        )
    return PublisherConfig(
        queue=QueueSection(
            name=queue_name,
            max_queue_size=v["max_queue_size"],
            max_event_size=v["max_event_size"],
            mode=v["queue.mode"],
        ),
        collector=CollectorSection(
            hostname=v["collector.hostname"],
            scheme=v["collector.scheme"],
            version=v["collector.version"],
            timeout=v["collector.timeout"],
            gzip_level=v["collector.gzip_level"],
            ca_file=v["collector.ca_file"],
            success_statuses=v["collector.success_statuses"],
            accept_html=v["collector.accept_html"],
        ),
        key=KeySection(name=v["key.name"], secret=v["key.secret"]),
        metrics=MetricsSection(
            namespace=v["metrics.namespace"],
            endpoint=v["metrics.endpoint"],
            prometheus=v["metrics.prometheus"],
        ),
        drain=DrainSection(max_messages=v["drain.max_messages"], landing=v["drain.landing"]),
        sender=SenderSection(nice=v["sender.nice"]),
        batch=BatchSection(max_bytes=v["batch.max_bytes"], max_wait=v["batch.max_wait"]),
        retry=RetrySection(
            backoff_initial=v["retry.backoff_initial"],
            backoff_max=v["retry.backoff_max"],
            retry_after_max=v["retry.retry_after_max"],
            bisect_after_5xx=v["retry.bisect_after_5xx"],
        ),
        shutdown=ShutdownSection(deadline=v["shutdown.deadline"]),
        spool=SpoolSection(
            path=v["spool.path"],
            max_bytes=v["spool.max_bytes"],
            segment_bytes=v["spool.segment_bytes"],
            fsync=v["spool.fsync"],
            fsync_interval=v["spool.fsync_interval"],
        ),
        dead_letter=DeadLetterSection(
            path=v["dead_letter.path"], max_bytes=v["dead_letter.max_bytes"]
        ),
        health=HealthSection(
            path=v["health.path"],
            interval=v["health.interval"],
            log_interval=v["health.log_interval"],
        ),
        unknown_keys=tuple(sorted(k for k in raw if k not in KNOWN_KEYS)),
        warnings=tuple(warnings),
    )


def load(
    path: str, queue_name: str, environ: Optional[Mapping[str, str]] = None
) -> PublisherConfig:
    """Read ``path`` and parse its ``[event-publisher:<queue_name>]`` section.

    :raises ConfigError: the file, the section or a key is missing or invalid.
    """
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            info = os.fstat(f.fileno())
            parser.read_file(f)
    except OSError as exc:
        raise ConfigError(path, f"cannot read the config file: {exc.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(path, f"not a valid INI file: {first_line}") from None
    section = "event-publisher:" + queue_name
    if not parser.has_section(section):
        found: List[str] = [s for s in parser.sections() if s.startswith("event-publisher:")]
        hint = f" (found: {', '.join('[' + s + ']' for s in found)})" if found else ""
        raise ConfigError(f"[{section}]", f"section not found in {path}{hint}")
    raw = dict(parser.items(section))
    # A key.secret that is only ${VAR} comes from the environment, not the file.
    inline = raw.get("key.secret", "").strip()
    warning = None
    if inline and not _ENV.fullmatch(inline):
        warning = check_secret_file("key.secret", path, info)
    cfg = parse_section(queue_name, raw, environ)
    if warning is not None:
        cfg = dataclasses.replace(cfg, warnings=cfg.warnings + (warning,))
    return cfg
