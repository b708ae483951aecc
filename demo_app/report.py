"""The demo's summary: per stream, the events put, delivered, duplicated, and how long they took.

"Put to collector" is the collector's receipt time minus the event's own
timestamp (v2 ``client_timestamp``, filled in at ``put``; v1 ``event_ts``),
both in milliseconds on this machine's clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

TableRenderer = Callable[[Sequence[str], Sequence[Sequence[object]]], str]


def percentile(values: Sequence[float], fraction: float) -> Optional[float]:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Delivery:
    """The uuids each stream put, against what the collector stored (uuid -> row)."""

    put: Dict[str, List[str]]
    stored: Dict[str, Dict[str, Any]]

    def delivered(self, stream: str) -> List[Dict[str, Any]]:
        return [self.stored[u] for u in self.put[stream] if u in self.stored]

    def missing(self) -> List[str]:
        return [u for uuids in self.put.values() for u in uuids if u not in self.stored]

    def total_put(self) -> int:
        return sum(len(uuids) for uuids in self.put.values())

    def total_delivered(self) -> int:
        return sum(len(self.delivered(stream)) for stream in self.put)


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _row(name: str, put: int, rows: List[Dict[str, Any]]) -> List[object]:
    latencies = [float(r["received_ms"] - r["timestamp_ms"]) for r in rows]
    duplicates = sum(r["receipts"] - 1 for r in rows)
    return [name, put, len(rows), duplicates,
            _ms(percentile(latencies, 0.5)), _ms(percentile(latencies, 0.99))]


def summarize(delivery: Delivery, render: TableRenderer) -> str:
    """The summary table, one row per stream and a total."""
    headers = ["stream", "put", "delivered", "duplicates", "p50 put->collector", "p99"]
    rows = [_row(stream, len(delivery.put[stream]), delivery.delivered(stream))
            for stream in sorted(delivery.put)]
    every = [r for stream in delivery.put for r in delivery.delivered(stream)]
    rows.append(_row("total", delivery.total_put(), every))
    return render(headers, rows)
