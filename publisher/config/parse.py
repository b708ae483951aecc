"""The publisher's configuration: ``[event-publisher:NAME]`` parsed once into frozen objects.

The keys and their checks are :mod:`publisher.config.table`'s; the objects,
one per INI section, are :mod:`publisher.config.sections`'.

Every problem is a :class:`~baseplate_events.errors.ConfigError` naming the
full key and what is wrong, so that ``__main__`` can print it on one line and
exit with status 2. ``${ENV_VAR}`` in a value is replaced from the environment.
"""

import configparser
import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from baseplate_events.errors import ConfigError

from publisher.config.secrets import check_secret_file
from publisher.config.sections import (
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
from publisher.config.table import (
    ENV_REFERENCE,
    KNOWN_KEYS,
    PUBLISHER_SETTINGS,
    REQUIRED,
    SECRET_KEYS,
    WORKED_OUT,
    base64_secret,
    expand_env,
)


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
        return base64_secret("key.secret_file", text)
    if inline is None:
        raise ConfigError("key.secret", "required but not set (or set key.secret_file)")
    return base64_secret("key.secret", inline)


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
        if name in SECRET_KEYS:
            if name == SECRET_KEYS[0]:
                v[name] = _secret(expanded, warnings)
            continue
        value = _value(expanded, name)
        if value is not None:
            v[name] = setting.parse(name, value)
        elif name in WORKED_OUT:
            v[name] = WORKED_OUT[name](queue_name, env, v)
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
    if inline and not ENV_REFERENCE.fullmatch(inline):
        warning = check_secret_file("key.secret", path, info)
    cfg = parse_section(queue_name, raw, environ)
    if warning is not None:
        cfg = dataclasses.replace(cfg, warnings=cfg.warnings + (warning,))
    return cfg
