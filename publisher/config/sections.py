"""The publisher's configuration as typed objects: one small frozen object per INI section.

``[event-publisher:NAME]`` groups its keys by prefix (``collector.*``,
``key.*``, ``spool.*``, ...); :func:`publisher.config.parse.parse_section` builds
one object below per group, and each part of the publisher takes its own
(``Spool.from_config(cfg.spool)``, ``Poster.from_config(cfg.collector, cfg.key,
...)``) instead of ``__main__`` unpacking fields by hand. The INI keys are the
contract (see docs/publisher.rst); the attribute names here follow them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import FrozenSet, Optional, Tuple


@dataclass(frozen=True)
class CollectorSection:
    """``collector.*``: where batches go and how they travel."""

    hostname: str
    scheme: str
    version: str
    timeout: float
    gzip_level: int
    ca_file: Optional[str]
    #: Statuses that deliver a batch (``collector.success_statuses``); the
    #: defaults of these fields are in :data:`publisher.config.table.PUBLISHER_SETTINGS`.
    success_statuses: FrozenSet[int]
    #: Whether a ``text/html`` body with a success status delivers (``collector.accept_html``).
    accept_html: bool

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.hostname}/v{self.version}"


@dataclass(frozen=True)
class KeySection:
    """``key.*``: the HMAC key batches are signed with."""

    name: str
    # A config object ends up in tracebacks and debug logs; the secret must not.
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class MetricsSection:
    """``metrics.*``: statsd and Prometheus."""

    namespace: str
    endpoint: Optional[Tuple[str, int]]
    #: Where to serve Prometheus ``/metrics`` (port 0: any free port); None for nowhere.
    prometheus: Optional[Tuple[str, int]] = None


@dataclass(frozen=True)
class QueueSection:
    """``max_queue_size``, ``max_event_size``, ``queue.mode``: the POSIX queue ``/events-NAME``."""

    name: str
    max_queue_size: int
    max_event_size: int
    mode: int

    @property
    def path(self) -> str:
        return "/events-" + self.name


@dataclass(frozen=True)
class DrainSection:
    """``drain.*``: how the intake loop takes events off the queue."""

    max_messages: int
    landing: bool


@dataclass(frozen=True)
class SenderSection:
    """``sender.*``: the sender thread."""

    nice: int


@dataclass(frozen=True)
class BatchSection:
    """``batch.*``: how batches are cut."""

    max_bytes: int
    max_wait: float


@dataclass(frozen=True)
class RetrySection:
    """``retry.*``: backoff and the bisection of refused batches."""

    backoff_initial: float
    backoff_max: float
    retry_after_max: float
    bisect_after_5xx: int


@dataclass(frozen=True)
class ShutdownSection:
    """``shutdown.*``: the flush after the first signal."""

    deadline: float


@dataclass(frozen=True)
class SpoolSection:
    """``spool.*``: the write-ahead spool on disk."""

    path: str
    max_bytes: int
    segment_bytes: int
    fsync: str
    fsync_interval: float


@dataclass(frozen=True)
class DeadLetterSection:
    """``dead_letter.*``: where refused events are set aside."""

    path: str
    max_bytes: int


@dataclass(frozen=True)
class HealthSection:
    """``health.*``: the health file and its log line."""

    path: str
    interval: float
    log_interval: float


@dataclass(frozen=True)
class PublisherConfig:
    """Everything the publisher needs, typed and validated, one object per section."""

    queue: QueueSection
    collector: CollectorSection
    key: KeySection
    metrics: MetricsSection
    drain: DrainSection
    sender: SenderSection
    batch: BatchSection
    retry: RetrySection
    shutdown: ShutdownSection
    spool: SpoolSection
    dead_letter: DeadLetterSection
    health: HealthSection
    unknown_keys: Tuple[str, ...] = ()
    #: Things worth a warning at start-up (a secret other users can read).
    warnings: Tuple[str, ...] = ()

    @property
    def queue_name(self) -> str:
        return self.queue.name

    def __repr__(self) -> str:
        return f"<PublisherConfig queue={self.queue.path} collector={self.collector.url}>"
