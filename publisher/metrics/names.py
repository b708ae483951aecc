"""Every metric the publisher keeps, by its statsd name, with what it means.

One list for every place a figure appears: the counters in the health file
(all of them, at 0 from the start), statsd, and Prometheus' ``/metrics`` (see
:mod:`publisher.metrics.prometheus`, which adds each name's HELP line from here).
This module imports nothing optional, so the health file has every counter
without prometheus_client installed.
"""
from __future__ import annotations

from typing import Dict

#: statsd counter name -> what it counts (the metric's HELP line).
COUNTERS: Dict[str, str] = {
    "sent": "Events the collector accepted.",
    "error.http": "POSTs the collector answered with an error status.",
    "error.io": "POSTs that failed on the connection (refused, reset, timed out).",
    "retry": "POSTs repeated after a failure.",
    "auth_failure": "POSTs the collector refused with 401 or 403.",
    "split": "Batches halved after a 413 answer or a refusal.",
    "dead_letter": "Events the collector refused while accepting others, kept in the "
    "dead-letter file.",
    "dead_letter.dropped": "Refused events dropped because the dead-letter file reached "
    "dead_letter.max_bytes.",
    "held": "Times a refused event was kept, for want of evidence that the collector is healthy.",
    "refused_unproven": "Backoffs taken because the collector refused events and accepted none.",
    "drained": "Events taken off the queue and written to the spool.",
    "dropped.spool_full": "Events dropped because the spool reached spool.max_bytes.",
    "dropped.empty": "Empty messages taken off the queue and dropped.",
    "dropped.spool_error": "Events lost at shutdown because the disk took nothing.",
    "dropped.spool_damaged": "Events of damaged spool records skipped (when their count is known).",
    "spool.damaged_bytes": "Bytes of damaged spool records skipped.",
    "dropped.landing_damaged": "Events lost because another process overwrote the landing ring.",
    "spool.write_error": "Spool writes that failed (a full disk); retried every second.",
    "error.answer": "POSTs answered with a success status that does not say the batch was "
    "stored (a status outside collector.success_statuses, an HTML page, a JSON count "
    "short of the batch); kept and retried.",
    "error.redirect": "POSTs answered with a redirect (3xx), never followed; kept and retried.",
}
#: statsd gauge name -> what it measures.
GAUGES: Dict[str, str] = {
    "queue.depth": "Events waiting in the POSIX message queue.",
    "spool.events": "Events in the spool, not yet accepted by the collector.",
    "spool.bytes": "Bytes in the spool, not yet accepted by the collector.",
    "spool.stalled": "1 while the spool cannot be written and draining has stopped, else 0.",
    "queue.capacity": "Messages the POSIX message queue holds when full.",
    "spool.max_bytes": "The spool's budget (spool.max_bytes): beyond it the oldest events go.",
    "batch.failed_tries": "Failed POSTs in a row for the oldest unsent batch (0 once one is "
    "accepted).",
    "spool.oldest_age_seconds": "Age of the oldest event in the spool, 0 when it is empty.",
}
#: statsd timer name (milliseconds) -> what it times (in seconds on /metrics).
TIMERS: Dict[str, str] = {
    "post": "Time one batch POST took, answer included.",
}
#: Moments, on ``/metrics`` only, as Unix times (``<name>_timestamp_seconds``):
#: alert on ``time() - metric``. The health file has each as a time and an age.
MOMENTS: Dict[str, str] = {
    "last_success": "Unix time the collector last accepted a batch; 0 before the first.",
    "spool.oldest": "Unix time the oldest event not yet accepted was spooled; the current "
    "time when every spooled event is accepted.",
}
