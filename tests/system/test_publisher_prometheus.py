"""Prometheus: a real scrape of the real publisher's ``/metrics`` (``metrics.prometheus``)."""
from __future__ import annotations

import ast
import re
import socket
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from baseplate_events.mqueue.posix import MessageQueue
from publisher.metrics import prometheus

from tests.support.collector import LocalCollector
from tests.support.publisher import (
    SECRET,
    PublisherProcess,
    make_event,
    put_all,
)

pytestmark = pytest.mark.system

PUBLISHER = Path(__file__).resolve().parent.parent.parent / "publisher"

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def metrics_url(publisher: PublisherProcess) -> str:
    """The URL the start-up line says /metrics is served on."""
    found = re.search(r"metrics (?:.* and )?served for Prometheus on (http://\S+/metrics)",
                      publisher.log())
    assert found is not None, publisher.log()
    return found.group(1)


def scrape(url: str) -> Samples:
    """GET /metrics and parse it with prometheus_client's own parser."""
    response = requests.get(url, timeout=5)
    assert 200 == response.status_code
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def scrape_until(url: str, name: str, labels: Dict[str, str], value: float) -> Samples:
    """Scrape until ``name{labels}`` reaches ``value`` (gauges follow within 1 s)."""
    key = (name, tuple(sorted(labels.items())))
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(url)
        if samples.get(key) == value or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_a_scrape_shows_the_statsd_counts_under_prometheus_names(
    queue_name: str, start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """sent, retry, error.http, drained, the post timer and the gauges, labelled by queue."""
    with LocalCollector(SECRET, version="2j") as collector:
        collector.fail_requests(1, 503)
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0"})
        url = metrics_url(publisher)
        put_all(publisher_queue, [make_event(1), make_event(2)])
        collector.wait_for_events(2)
        label = {"queue": queue_name}
        scrape_until(url, "baseplate_events_publisher_drained_total", label, 2.0)
        samples = scrape_until(url, "baseplate_events_publisher_queue_depth", label, 0.0)
        assert 0 == publisher.stop()
        posts = len(collector.received) + 1  # the accepted batches and the 503
    q = (("queue", queue_name),)
    assert 2.0 == samples[("baseplate_events_publisher_sent_total", q)]
    assert 2.0 == samples[("baseplate_events_publisher_drained_total", q)]
    assert 1.0 == samples[("baseplate_events_publisher_retry_total", q)]
    assert 1.0 == samples[("baseplate_events_publisher_error_http_total", q)]
    assert 0.0 == samples[("baseplate_events_publisher_dropped_spool_full_total", q)]
    assert 0.0 == samples[("baseplate_events_publisher_queue_depth", q)]
    assert posts == samples[("baseplate_events_publisher_post_seconds_count", q)]
    assert {"baseplate_events_publisher_spool_events", "baseplate_events_publisher_spool_bytes"} \
        <= {name for name, labels in samples if labels == q}


def test_the_port_is_free_again_after_a_clean_stop(
    start_publisher: Callable[..., PublisherProcess],
):
    """After SIGTERM the publisher has closed its /metrics listener."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0"})
        url = metrics_url(publisher)
        assert 0 == publisher.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_a_port_in_use_costs_the_metrics_not_the_events(
    start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
):
    """Another process holds the port: one error line, and every event is still delivered."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with LocalCollector(SECRET, version="2j") as collector:
            publisher = start_publisher(collector, **{"metrics.prometheus": f"127.0.0.1:{port}"})
            put_all(publisher_queue, [make_event(1), make_event(2)])
            collector.wait_for_events(2)
            assert 0 == publisher.stop()
    expected = (f"metrics.prometheus: cannot listen on 127.0.0.1:{port} "
                "(Address already in use); no /metrics this run")
    assert [expected] == [line.split(" ERROR ", 1)[1] for line in publisher.log().splitlines()
                          if " ERROR " in line]


def receiver(node: ast.expr) -> str:
    """``metrics`` for both ``metrics.incr`` and ``self.metrics.incr``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def names_fed(method: str) -> List[str]:
    """Every literal name the publisher's code passes to ``metrics.<method>(...)``."""
    names = []
    for path in sorted(PUBLISHER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == method and receiver(node.func.value) == "metrics"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                names.append(node.args[0].value)
    return sorted(set(names))


@pytest.mark.parametrize("method, declared", [
    ("incr", prometheus.COUNTERS), ("gauge", prometheus.GAUGES), ("timing", prometheus.TIMERS),
])
def test_every_statsd_name_the_publisher_uses_is_declared_for_prometheus(method, declared):
    """Each counter, gauge and timer fed to statsd has its HELP text and its series from start."""
    assert sorted(declared) == names_fed(method)
