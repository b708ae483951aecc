"""The collector's HTML page: counts per source and action, and the latest events."""
from __future__ import annotations

import datetime
from html import escape
from typing import Any, Dict, List


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%H:%M:%S.") + f"{ms % 1000:03d}"


def _rows(cells: List[List[Any]]) -> str:
    return "\n".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in cells
    )


def render_page(summary: Dict[str, Any], latest: List[Dict[str, Any]]) -> str:
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
                f'{e["received_ms"] - e["timestamp_ms"]} ms',
                e["receipts"],
            ]
            for e in latest
        ]
    )
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
ignored. Answers by status: {escape(responses)}.
JSON: <a href="/api/events">/api/events</a>.</p>
<h2>Counts per source and action</h2>
<table><tr><th>source</th><th>action</th><th>events</th></tr>
{counts}
</table>
<h2>Latest events</h2>
<table><tr><th>uuid</th><th>version</th><th>source</th><th>action</th><th>noun</th>
<th>received (UTC)</th><th>put&rarr;stored</th><th>receipts</th></tr>
{events}
</table>
</body></html>
"""
