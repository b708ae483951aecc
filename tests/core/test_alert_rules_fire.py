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

RULES = Path(__file__).resolve().parent.parent.parent / "docs" / "alerts" / "publisher.rules.yml"

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


@pytest.mark.system  # runs promtool
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


PROMTOOL_TEST = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'baseplate_events_publisher_error_answer_total{{queue="v2", instance="a:9"}}'
        values: '0 0 1 2 3'
      - series: 'baseplate_events_publisher_error_redirect_total{{queue="v2", instance="a:9"}}'
        values: '0 0 0 0 0'
      - series: 'baseplate_events_publisher_batch_failed_tries{{queue="v2", instance="a:9"}}'
        values: '0 1 2 3 4 5 6 7 8 9 10 11 12 13'
    alert_rule_test:
      - eval_time: 1m
        alertname: EventPublisherAnswerNotFromTheCollector
        exp_alerts: []
      - eval_time: 4m
        alertname: EventPublisherAnswerNotFromTheCollector
        exp_alerts:
          - exp_labels: {{severity: critical, queue: v2, instance: "a:9"}}
            exp_annotations:
              summary: "Something other than the collector answers a:9 (queue v2)"
              description: "A success status that does not say the batch was stored (an HTML \\
                page, a short accepted count, a status outside collector.success_statuses) or \\
                a redirect: the events are kept and retried. The publisher's log names what \\
                answered and the setting to fix."
      - eval_time: 9m
        alertname: EventPublisherBatchStuck
        exp_alerts: []
      - eval_time: 11m
        alertname: EventPublisherBatchStuck
        exp_alerts:
          - exp_labels: {{severity: critical, queue: v2, instance: "a:9"}}
            exp_annotations:
              summary: "A batch from a:9 (queue v2) has failed for 10 minutes"
              description: "The oldest unsent batch failed 11 POSTs in a row and none was \\
                accepted since; baseplate_events_publisher_spool_oldest_age_seconds says how \\
                long its events have waited. The publisher's log says why."
"""


@pytest.mark.system
def test_kept_answers_and_a_batch_stuck_10_minutes_fire(tmp_path: Path) -> None:
    """promtool test rules: a kept 2xx fires at once, a failing batch after 10 minutes."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: sudo apt-get install prometheus (Debian/Ubuntu) "
                    "or brew install prometheus (macOS)")
    spec = tmp_path / "publisher.rules.test.yml"
    spec.write_text(PROMTOOL_TEST.format(rules=json.dumps(str(RULES))), encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True,
                            text=True, timeout=60)
    assert 0 == result.returncode, result.stdout + result.stderr
