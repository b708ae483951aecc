"""The publisher's alert rules fire on the figures they watch (``promtool test rules``).

Moments are Unix times: in promtool's tests ``time()`` is the evaluation
time, so a moment held at 0 is as old as the test's clock.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "docs" / "alerts" / "publisher.rules.yml"

SPEC = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: '{p}spool_oldest_timestamp_seconds{{queue="v2", instance="a:9"}}'
        values: '0x20'
      - series: '{p}last_success_timestamp_seconds{{queue="v2", instance="a:9"}}'
        values: '0x20'
      - series: '{p}spool_events{{queue="v2", instance="a:9"}}'
        values: '5x20'
      - series: '{p}last_success_timestamp_seconds{{queue="q", instance="b:9"}}'
        values: '0x20'
      - series: '{p}spool_events{{queue="q", instance="b:9"}}'
        values: '0x20'
      - series: '{p}spool_bytes{{queue="v2", instance="a:9"}}'
        values: '0 0 900x10'
      - series: '{p}spool_max_bytes{{queue="v2", instance="a:9"}}'
        values: '1000x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: EventPublisherEventsWaiting
        exp_alerts: []
      - eval_time: 12m
        alertname: EventPublisherEventsWaiting
        exp_alerts:
          - exp_labels: {{severity: warning, queue: v2, instance: "a:9"}}
            exp_annotations:
              summary: "Events on a:9 (queue v2) have waited over 5 minutes"
              description: "The oldest event not yet accepted by the collector is 12m 0s old: \\
                the collector is down, slow or refusing the batches. The publisher's log says \\
                which."
      - eval_time: 15m
        alertname: EventPublisherNothingGetsThrough
        exp_alerts: []
      - eval_time: 17m
        alertname: EventPublisherNothingGetsThrough
        exp_alerts:
          - exp_labels: {{severity: critical, queue: v2, instance: "a:9"}}
            exp_annotations:
              summary: "No batch from a:9 (queue v2) accepted for 10 minutes"
              description: "Events wait in the spool and the collector has accepted none of \\
                them for over 10 minutes (a quiet stream with an empty spool does not fire \\
                this)."
      - eval_time: 6m
        alertname: EventPublisherSpoolNearlyFull
        exp_alerts: []
      - eval_time: 8m
        alertname: EventPublisherSpoolNearlyFull
        exp_alerts:
          - exp_labels: {{severity: warning, queue: v2, instance: "a:9"}}
            exp_annotations:
              summary: "The spool on a:9 (queue v2) is over 80% of spool.max_bytes"
              description: "Beyond spool.max_bytes the oldest events are dropped \\
                (dropped.spool_full)."
"""


def test_the_rules_fire_on_old_events_no_success_and_a_full_spool(tmp_path: Path) -> None:
    """promtool: events waiting, nothing accepted with a backlog (not with an empty spool),
    and a spool over 80% each fire after their ``for``, and not before."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: sudo apt-get install prometheus (Debian/Ubuntu) "
                    "or brew install prometheus (macOS)")
    spec = tmp_path / "publisher.rules.test.yml"
    spec.write_text(SPEC.format(rules=json.dumps(str(RULES)), p="baseplate_events_publisher_"),
                    encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True,
                            text=True, timeout=60)
    assert 0 == result.returncode, result.stdout + result.stderr
