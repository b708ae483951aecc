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
import difflib
import dataclasses
import os
import re
import ssl
from typing import (Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple,
                    TypeVar)

from baseplate_events import validation
from baseplate_events.errors import ConfigError
from baseplate_events.queue import MAX_EVENT_SIZE, MAX_QUEUE_SIZE

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

T = TypeVar("T")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Every key the publisher understands; anything else in the section is reported.
KNOWN_KEYS = frozenset(
    {
        "collector.hostname",
        "collector.scheme",
        "collector.version",
        "collector.timeout",
        "collector.gzip_level",
        "collector.ca_file",
        "collector.success_statuses",
        "collector.accept_html",
        "key.name",
        "key.secret",
        "key.secret_file",
        "metrics.namespace",
        "metrics.endpoint",
        "metrics.prometheus",
        "max_queue_size",
        "max_event_size",
        "queue.mode",
        "drain.max_messages",
        "drain.landing",
        "sender.nice",
        "batch.max_bytes",
        "batch.max_wait",
        "retry.backoff_initial",
        "retry.backoff_max",
        "retry.retry_after_max",
        "retry.bisect_after_5xx",
        "shutdown.deadline",
        "spool.path",
        "spool.max_bytes",
        "spool.segment_bytes",
        "spool.fsync",
        "spool.fsync_interval",
        "dead_letter.path",
        "dead_letter.max_bytes",
        "health.path",
        "health.interval",
        "health.log_interval",
    }
)


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


class _Reader:
    """Typed access to the raw section; each getter names the full key on error."""

    def __init__(self, raw: Dict[str, str]) -> None:
        self.raw = raw

    def get(self, key: str, parse: Callable[[str, str], T], default: Optional[T] = None) -> T:
        value = self.raw.get(key)
        if value is None or value.strip() == "":
            if default is None:
                raise ConfigError(key, "required but not set")
            return default
        return parse(key, value.strip())

    def optional(self, key: str) -> Optional[str]:
        value = self.raw.get(key)
        if value is None or value.strip() == "":
            return None
        return value.strip()


def _optional(reader: _Reader, key: str, parse: Callable[[str, str], T]) -> Optional[T]:
    """``parse`` the key's value, or None when it is not set."""
    value = reader.optional(key)
    return None if value is None else parse(key, value)


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


def _secret(reader: _Reader, warnings: List[str]) -> bytes:
    inline = reader.optional("key.secret")
    path = reader.optional("key.secret_file")
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
    parts = []
    for key in keys:
        close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        parts.append(f"{key!r}{hint}")
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
    r = _Reader(expanded)

    spool_path = r.get("spool.path", _string, default_spool_path(queue_name, env))
    max_event_size = r.get("max_event_size", _positive_int, MAX_EVENT_SIZE)
    batch_max_bytes = r.get("batch.max_bytes", _positive_int, MAX_BATCH_BYTES)
    if batch_max_bytes < 64:
        raise ConfigError("batch.max_bytes", f"expected at least 64, got {batch_max_bytes}")
    endpoint = r.optional("metrics.endpoint")
    metrics_endpoint = _endpoint("metrics.endpoint", endpoint) if endpoint else None
    namespace = r.get("metrics.namespace", _string, "")
    backoff_initial = r.get("retry.backoff_initial", _positive_seconds, 1.0)
    backoff_max = r.get("retry.backoff_max", _positive_seconds, 60.0)
    if backoff_max < backoff_initial:
        raise ConfigError(
            "retry.backoff_max",
            f"must be at least retry.backoff_initial ({backoff_initial:g}), got {backoff_max:g}",
        )
    ca_file = r.optional("collector.ca_file")
    unknown = tuple(sorted(k for k in raw if k not in KNOWN_KEYS))
    warnings: List[str] = []
    # Read in this order, so that of several bad keys the same one is reported first.
    collector_hostname = r.get("collector.hostname", _hostname)
    collector_scheme = r.get("collector.scheme", _scheme, "https")
    collector_version = r.get("collector.version", _version, "2")
    collector_timeout = r.get("collector.timeout", _positive_seconds, 3.0)
    gzip_level = r.get("collector.gzip_level", _int_in(1, 9), 6)
    success_statuses = r.get("collector.success_statuses", _success_statuses,
                             frozenset({200, 202, 204}))
    accept_html = r.get("collector.accept_html", _boolean, False)
    key = KeySection(name=r.get("key.name", _key_name), secret=_secret(r, warnings))
    queue = QueueSection(
        name=queue_name,
        max_queue_size=r.get("max_queue_size", _positive_int, MAX_QUEUE_SIZE),
        max_event_size=max_event_size,
        mode=r.get("queue.mode", _mode, 0o600),
    )
    drain = DrainSection(
        max_messages=r.get("drain.max_messages", _positive_int, 1000),
        landing=r.get("drain.landing", _switch, True),
    )
    # 0 since the sender speaks requests: a niced thread that runs Python (and so
    # holds the GIL) gets preempted holding it and stalls the intake loop too;
    # median of 8 interleaved bench runs, 179k ev/s at 10 against 285k at 0.
    sender = SenderSection(nice=r.get("sender.nice", _int_in(0, 19), 0))
    batch = BatchSection(
        max_bytes=batch_max_bytes,
        max_wait=r.get("batch.max_wait", _seconds, 1.0),
    )
    retry = RetrySection(
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        retry_after_max=r.get("retry.retry_after_max", _seconds, 300.0),
        bisect_after_5xx=r.get("retry.bisect_after_5xx", _int_in(1, 1000), 3),
    )
    shutdown = ShutdownSection(deadline=r.get("shutdown.deadline", _seconds, 10.0))
    spool = SpoolSection(
        path=spool_path,
        max_bytes=r.get("spool.max_bytes", _positive_int, 1 << 30),
        segment_bytes=r.get("spool.segment_bytes", _positive_int, 8 << 20),
        fsync=r.get("spool.fsync", _fsync, "interval"),
        fsync_interval=r.get("spool.fsync_interval", _seconds, 1.0),
    )
    dead_letter = DeadLetterSection(
        path=r.get("dead_letter.path", _string, os.path.join(spool_path, "dead-letter.jsonl")),
        max_bytes=r.get("dead_letter.max_bytes", _positive_int, 100 << 20),
    )
    health = HealthSection(
        path=r.get("health.path", _string, os.path.join(spool_path, "health.json")),
        interval=r.get("health.interval", _positive_seconds, 5.0),
        log_interval=r.get("health.log_interval", _seconds, 60.0),
    )
    metrics = MetricsSection(
        namespace=namespace,
        endpoint=metrics_endpoint,
        prometheus=_optional(r, "metrics.prometheus", _listen_address),
    )
    collector = CollectorSection(
        hostname=collector_hostname,
        scheme=collector_scheme,
        version=collector_version,
        timeout=collector_timeout,
        gzip_level=gzip_level,
        ca_file=_ca_file("collector.ca_file", ca_file) if ca_file else None,
        success_statuses=success_statuses,
        accept_html=accept_html,
    )
    return PublisherConfig(
        queue=queue,
        collector=collector,
        key=key,
        metrics=metrics,
        drain=drain,
        sender=sender,
        batch=batch,
        retry=retry,
        shutdown=shutdown,
        spool=spool,
        dead_letter=dead_letter,
        health=health,
        unknown_keys=unknown,
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
