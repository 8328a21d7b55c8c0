"""The dashboard's charts in one self-contained HTML file, to share or attach to a ticket.

    python -m tools.report [OUTPUT] [report.html]

Plotly's JavaScript is inlined once, so the file opens anywhere, offline.
"""

from __future__ import annotations

import html
import sys
import time
from pathlib import Path
from typing import Any

from config import output_folder
from tools import charts
from tools.query import connect

_STYLE = (
    "body{font-family:sans-serif;margin:16px} .grid{display:grid;grid-template-columns:1fr 1fr}"
    " table{border-collapse:collapse;font:12px monospace}"
    " td,th{border:1px solid #ccc;padding:2px 6px}"
)


def _table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"<h3>{html.escape(title)}</h3><p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body}</table>"


def render(output: str) -> str:
    built = charts.build(connect(output))
    figures = [built.pages, built.errors, built.sessions, built.ip_activity]
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)
    ]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Clickstream report</title>
<style>{_STYLE}</style>
</head><body>
<h2>Clickstream report</h2>
<p>{html.escape(output)}, written {time.strftime("%Y-%m-%d %H:%M:%S %Z")};
newest window end: {html.escape(built.newest_window_end or "none yet")}</p>
<div class="grid">{"".join(f"<div>{p}</div>" for p in parts)}</div>
<div class="grid">
<div>{_table("Alerting windows (errors > 5)", built.alerts)}</div>
<div>{_table("Pipeline health", built.health)}</div>
<div>{_table("Dead letters and late events", built.reasons)}</div>
</div></body></html>
"""


def main() -> None:
    args = sys.argv[1:]
    output = args[0] if args else output_folder()
    target = Path(args[1] if len(args) > 1 else "report.html")
    target.write_text(render(output))
    print(f"report: {target} ({target.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
