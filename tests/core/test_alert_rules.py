"""The publisher's alert rules (docs/alerts/publisher.rules.yml) and the figures they use.

promtool checks the file; a real publisher's ``/metrics`` must carry every
metric a rule names and every figure of its health file.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Set

import pytest
import yaml

from baseplate_events.mqueue.posix import MessageQueue
from publisher.metrics import health
from publisher.metrics.names import COUNTERS
from publisher.metrics.prometheus import metric_name

from tests.support.collector import LocalCollector
from tests.support.publisher import SECRET, PublisherProcess, make_event, put_all
from tests.system.test_publisher_prometheus import metrics_url, scrape

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "docs" / "alerts" / "publisher.rules.yml"
#: PromQL words a rule may use that are not metrics.
PROMQL_WORDS = {"time", "increase", "rate", "and", "or", "unless", "on", "ignoring", "by",
                "without", "sum", "max", "min", "absent", "clamp_min", "bool"}


def _rules() -> List[Dict[str, str]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _metrics_named(expr: str) -> Set[str]:
    """The metric names in a PromQL expression (ranges, labels and strings taken out)."""
    bare = re.sub(r"\[[^\]]*\]|\{[^}]*\}|\"[^\"]*\"", " ", expr)
    words = set(re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", bare))
    return words - PROMQL_WORDS


@pytest.mark.system
def test_promtool_accepts_the_publisher_rules() -> None:
    """``promtool check rules`` passes on docs/alerts/publisher.rules.yml."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: sudo apt-get install prometheus (Debian/Ubuntu) "
                    "or brew install prometheus (macOS)")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_every_rule_names_only_publisher_metrics() -> None:
    """Each rule's expression names at least one metric, all of them the publisher's."""
    named = {rule["alert"]: _metrics_named(rule["expr"]) for rule in _rules()}
    assert [] == [alert for alert, names in named.items() if not names]
    assert {} == {alert: sorted(n for n in names if not n.startswith("baseplate_events_publisher_"))
                  for alert, names in named.items()
                  if any(not n.startswith("baseplate_events_publisher_") for n in names)}


def _health(path: Path) -> dict:
    """The health file, once the publisher has written it (its first pass of the loop)."""
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _scraped_names(publisher: PublisherProcess) -> Set[str]:
    return {name for name, _ in scrape(metrics_url(publisher))}


@pytest.mark.system
def test_every_metric_a_rule_names_is_on_a_real_publishers_metrics(
    start_publisher: Callable[..., PublisherProcess],
) -> None:
    """A fresh publisher's first scrape carries every metric the rules name."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0"})
        scraped = _scraped_names(publisher)
        assert 0 == publisher.stop()
    named = set().union(*(_metrics_named(rule["expr"]) for rule in _rules()))
    assert set() == named - scraped


@pytest.mark.system
def test_every_health_figure_is_on_a_real_publishers_metrics(
    tmp_path: Path, start_publisher: Callable[..., PublisherProcess],
) -> None:
    """Each figure and counter of the health file has its metric on /metrics."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0"})
        scraped = _scraped_names(publisher)
        doc = _health(tmp_path / "spool" / "health.json")
        assert 0 == publisher.stop()
    figures = set(doc) - {"time", "pid", "queue", "counters"}
    assert set() == figures - set(health.ON_METRICS)
    wanted = {metric_name(health.ON_METRICS[figure]) for figure in figures
              if health.ON_METRICS[figure] not in ("last_success", "spool.oldest")}
    wanted |= {metric_name("last_success") + "_timestamp_seconds",
               metric_name("spool.oldest") + "_timestamp_seconds"}
    wanted |= {metric_name(counter) + "_total" for counter in doc["counters"]}
    assert set() == wanted - scraped


@pytest.mark.system
def test_moments_are_unix_times_on_metrics(
    queue_name: str, start_publisher: Callable[..., PublisherProcess],
    publisher_queue: MessageQueue,
) -> None:
    """last_success is the time of the accepted batch; spool.oldest is now once all is sent."""
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0"})
        url = metrics_url(publisher)
        key = (("queue", queue_name),)
        before = scrape(url)
        put_started = time.time()
        put_all(publisher_queue, [make_event(1)])
        collector.wait_for_events(1)
        time.sleep(1.2)  # the moments' gauges are set once a second
        after = scrape(url)
        assert 0 == publisher.stop()
    last = metric_name("last_success") + "_timestamp_seconds"
    oldest = metric_name("spool.oldest") + "_timestamp_seconds"
    assert 0.0 == before[(last, key)]
    assert put_started <= after[(last, key)] <= time.time()
    assert put_started <= after[(oldest, key)] <= time.time()


@pytest.mark.system
def test_the_health_file_lists_every_counter_from_the_start(
    tmp_path: Path, start_publisher: Callable[..., PublisherProcess],
) -> None:
    """Before any event, health.json's counters are every counter, each at 0."""
    with LocalCollector(SECRET, version="2j") as collector:
        start_publisher(collector)
        doc = _health(tmp_path / "spool" / "health.json")
    assert dict.fromkeys(COUNTERS, 0) == doc["counters"]


def test_the_publisher_page_documents_exactly_the_metrics_the_publisher_has() -> None:
    """Each ``.. metric::`` of docs/publisher.rst is a publisher metric, and each one is there."""
    from publisher.metrics.names import GAUGES, MOMENTS, TIMERS

    page = (ROOT / "docs" / "publisher.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. metric:: (\S+)$", page, re.MULTILINE))
    assert set(COUNTERS) | set(GAUGES) | set(TIMERS) | set(MOMENTS) == documented


@pytest.mark.system
def test_every_prometheus_name_on_the_operations_page_is_on_a_real_publishers_metrics(
    start_publisher: Callable[..., PublisherProcess],
) -> None:
    """Each full ``baseplate_events_publisher_…`` name docs/operations.rst gives is scraped."""
    page = (ROOT / "docs" / "operations.rst").read_text(encoding="utf-8")
    named = set(re.findall(r"baseplate_events_publisher_[a-z_]*[a-z]", page))
    assert named, "no full metric name on the page: is the pattern still right?"
    with LocalCollector(SECRET, version="2j") as collector:
        publisher = start_publisher(collector, **{"metrics.prometheus": "127.0.0.1:0"})
        scraped = _scraped_names(publisher)
        assert 0 == publisher.stop()
    assert set() == named - scraped
