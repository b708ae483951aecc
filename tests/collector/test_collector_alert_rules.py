"""docs/alerts/collector.rules.yml: valid for promtool, firing on the figures it is about,
and naming only metrics a real collector serves."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.processes import REPO
from tests.support.service import CollectorProcess, scrape

RULES = Path(REPO) / "docs" / "alerts" / "collector.rules.yml"
PROMTOOL = shutil.which("promtool")


def promtool(*args: str) -> "subprocess.CompletedProcess[str]":
    if PROMTOOL is None:
        pytest.skip("needs promtool: apt-get install prometheus (Debian/Ubuntu)")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.system
def test_promtool_checks_the_collector_rules():
    """promtool check rules: the file is valid, with its six rules."""
    result = promtool("check", "rules", str(RULES))
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@pytest.mark.system
def test_the_sink_alerts_fire_for_the_collector_whose_sink_fails(tmp_path: Path):
    """promtool test rules: a collector answering 503 and unready fires both, the other not."""
    test = tmp_path / "rules_test.yml"
    text = (Path(REPO) / "tests" / "fixtures" / "collector_rules_test.yml").read_text()
    test.write_text(text.replace("RULES", str(RULES)))
    result = promtool("test", "rules", str(test))
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.system
def test_every_metric_in_the_rules_is_served_by_the_collector(tmp_path: Path):
    """Each baseplate_events_collector_* name in the rules is on a real collector's /metrics
    (requests_total once it has answered one)."""
    named = set(re.findall(r"baseplate_events_collector_[a-z_]+", RULES.read_text()))
    with CollectorProcess("--option", f"sqlite.path={tmp_path / 'events.sqlite3'}",
                          "--metrics", "127.0.0.1:0") as collector:
        url = collector.start_line.split("metrics on ")[1].split(")")[0]
        assert 200 == requests.get(collector.url + "/healthz", timeout=5).status_code
        served = {name.split("{")[0] for name in scrape(url)}
        assert 0 == collector.stop()
    assert len(named) == 7 and named <= served, named - served
