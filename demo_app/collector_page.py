"""The collector's HTML page: counts, the latest events with their fields, refused events."""
from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any, Dict, List, Optional


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%H:%M:%S.") + f"{ms % 1000:03d}"


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _rows(cells: List[List[Any]]) -> str:
    return "\n".join(
        "<tr>" + "".join(f"<td>{escape(str(_blank(cell)))}</td>" for cell in row) + "</tr>"
        for row in cells
    )


def _fields(event: Dict[str, Any]) -> str:
    """The event's fields, by name where a schema is known, else by id (compact, cut at 300)."""
    shown: Optional[Any] = event.get("named")
    if shown is None:
        shown = event.get("fields")
    text = json.dumps(shown, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= 300 else text[:299] + "…"


def _latency(event: Dict[str, Any]) -> str:
    if event.get("timestamp_ms") is None:
        return ""
    return f'{event["received_ms"] - event["timestamp_ms"]} ms'


def render_page(summary: Dict[str, Any], latest: List[Dict[str, Any]],
                refused: List[Dict[str, Any]]) -> str:
    """The whole page; every value is escaped, since events carry user data."""
    counts = _rows([[c["source"], c["action"], c["count"]] for c in summary["counts"]])
    events = _rows(
        [
            [
                e["uuid"],
                "v" + e["version"],
                e["source"],
                e["action"],
                e["noun"],
                _when(e["received_ms"]),
                _latency(e),
                e["receipts"],
                _fields(e),
            ]
            for e in latest
        ]
    )
    refusals = _rows([[_when(r["received_ms"]), r["stream"], r["index"], r["uuid"], r["reason"]]
                      for r in refused])
    responses = ", ".join(f"{status}: {n}" for status, n in summary["responses"].items()) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>Event collector</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
th {{ background: #f3f3f3; }}
</style></head>
<body>
<h1>Event collector</h1>
<p>{summary["total"]} events stored, {summary["duplicates"]} duplicate receipts
ignored, {summary["refused"]} events refused. Answers by status: {escape(responses)}.
JSON: <a href="/api/events">/api/events</a>.</p>
<h2>Counts per source and action</h2>
<table><tr><th>source</th><th>action</th><th>events</th></tr>
{counts}
</table>
<h2>Latest events</h2>
<table><tr><th>uuid</th><th>version</th><th>source</th><th>action</th><th>noun</th>
<th>received (UTC)</th><th>put&rarr;stored</th><th>receipts</th><th>fields</th></tr>
{events}
</table>
<h2>Latest refused events</h2>
<table><tr><th>received (UTC)</th><th>stream</th><th>index in batch</th><th>uuid</th>
<th>reason</th></tr>
{refusals}
</table>
</body></html>
"""
