"""The Kafka sink's settings (``kafka.*``, parsed once), producer configuration and timings.

See :mod:`baseplate_events.collector.sinks.kafka` for what the settings mean.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping

from ...errors import ConfigError
from ..service.settings import COLLECTOR_SETTINGS, sink_options
from . import STREAMS

__all__ = [
    "DEFAULTS",
    "DEFAULT_TOPICS",
    "FIXED",
    "MISSING_CLIENT",
    "POLL_SLICE",
    "READY_HOLDOFF",
    "REPORT_GRACE",
    "STATS_INTERVAL_MS",
    "KafkaSettings",
]

#: How much longer than ``message.timeout.ms`` a batch waits for its delivery
#: reports: librdkafka fails a message at that timeout, and its report then
#: takes a moment to reach us. With the defaults, 2.5 s: under the publisher's
#: ``collector.timeout`` (3 s), so that it hears the 503.
REPORT_GRACE = 0.5

#: The longest single wait in the delivery loop: another thread may have
#: served this batch's reports, and then nothing wakes this one.
POLL_SLICE = 0.01

#: How often librdkafka reports its broker connections (``ready`` reads them).
STATS_INTERVAL_MS = 2000

#: How long ``ready`` stays False after a batch could not be stored.
READY_HOLDOFF = 5.0

#: why ``sink = kafka`` cannot start without the kafka extra (the tail says the same)
MISSING_CLIENT = ("kafka needs confluent-kafka, which is not installed: "
                  "pip install 'baseplate-events[kafka]'")

#: The topic of each stream unless ``kafka.topic.<stream>`` says otherwise.
DEFAULT_TOPICS = {s: COLLECTOR_SETTINGS[f"kafka.topic.{s}"].default for s in STREAMS}

#: Producer options the sink's guarantees rest on; ``kafka.producer.*`` may not change them.
#: ``delivery.report.only.error``: a batch is delivered once the producer is empty
#: (see :mod:`.kafka_rounds`); only a failed message's report is handed to Python.
FIXED = {"enable.idempotence": "true", "acks": "all", "delivery.report.only.error": "true"}
_IDEMPOTENT = "an idempotent producer acknowledged by every in-sync replica"
_WHY_FIXED = {"enable.idempotence": _IDEMPOTENT, "acks": _IDEMPOTENT,
              "delivery.report.only.error": "a batch is known delivered when the producer is "
                                            "empty; reporting each success costs CPU per event"}

#: Defaults the sink picks over librdkafka's own; ``kafka.producer.*`` may change them.
#: ``store`` hands a whole batch over at once and waits for it, so lingering
#: 5 ms (librdkafka's default) for more only adds latency: a 1000-event batch
#: took 8.1 ms on Tansu, 3.7 ms with 1 ms, at the same CPU.
DEFAULTS = {"linger.ms": "1"}

@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka sink's settings, parsed once at start-up (see the module docstring)."""

    bootstrap_servers: str
    topics: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    message_timeout_ms: int = COLLECTOR_SETTINGS["kafka.message_timeout_ms"].default
    #: further librdkafka options, by their librdkafka name
    producer: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> "KafkaSettings":
        """Parse the sink's options: the collector's ``kafka.*`` settings, prefix stripped.

        :raises ConfigError: an option is missing or invalid (the message names its full key).
        """
        values = sink_options("kafka", options)
        servers = values["bootstrap_servers"]
        if not servers:
            raise ConfigError("kafka.bootstrap_servers", "required with sink = kafka, "
                              "e.g. kafka.bootstrap_servers = kafka-1:9092,kafka-2:9092")
        topics = {stream: values[f"topic.{stream}"] for stream in STREAMS}
        timeout = values["message_timeout_ms"]
        producer: Dict[str, str] = {}
        for key, value in options.items():
            if not key.startswith("producer."):
                continue
            option = key[len("producer."):]
            if option in FIXED and value.strip().lower() != FIXED[option]:
                raise ConfigError(f"kafka.{key}", f"the Kafka sink needs {option}={FIXED[option]} "
                                  f"({_WHY_FIXED[option]}); remove the key")
            producer[option] = value
        return cls(servers, topics, timeout, producer)

    def producer_config(self) -> Dict[str, Any]:
        """The librdkafka configuration of one producer (callbacks not included)."""
        config: Dict[str, Any] = dict(DEFAULTS)
        config.update(self.producer)
        config.update(FIXED)
        config["delivery.report.only.error"] = True  # read by confluent-kafka, which wants a bool
        config["bootstrap.servers"] = self.bootstrap_servers
        config["message.timeout.ms"] = self.message_timeout_ms
        return config
