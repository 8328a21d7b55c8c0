"""A live dashboard of the output tables, like the notebook's `display()` charts.

    python -m tools.dashboard [--output OUT] [--port 8050] [--metrics URL]

Serves a page (Plotly Dash; its JavaScript is bundled in the Python packages and
served by this process, no CDN) on `CLICKSTREAM_DASHBOARD_PORT` (8050) that reads
the tables again every `CLICKSTREAM_DASHBOARD_REFRESH` seconds (5) while the
dataflows write: pages per minute of the top users, errors per status with the
alert threshold and the alerting windows, sessions as a timeline, users seen from
several IPs or cities in a minute, and pipeline health (rows per table, newest
window against the clock, dead letters and late events by reason, and the
figures of `/metrics` when `--metrics` points at it).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import urllib.request
from typing import Any

import dash
from dash import dash_table, dcc, html
from prometheus_client.parser import text_string_to_metric_families

from config import dashboard_settings, output_folder
from tools import charts
from tools.query import connect

log = logging.getLogger(__name__)

METRICS = (
    "clickstream_records_read_total",
    "clickstream_rows_written_total",
    "clickstream_dead_letters_total",
    "clickstream_late_events_total",
    "clickstream_open_windows",
    "clickstream_consumer_lag_records",
)


def metric_figures(url: str) -> list[dict[str, Any]]:
    """The main figures of a `/metrics` endpoint, summed over labels."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError as ex:
        return [{"metric": url, "value": f"unreachable: {ex}"}]
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in METRICS:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return [{"metric": name, "value": f"{value:,.0f}"} for name, value in totals.items()]


def _table(id_: str) -> Any:
    # DataTable is generated at import time, so type checkers cannot see it
    return dash_table.DataTable(  # type: ignore[attr-defined]
        id=id_, page_size=10, style_cell={"fontFamily": "monospace", "fontSize": 12}
    )


class Latest:
    """The charts, built again and again in a thread of their own.

    A page's refresh only picks up the newest build, so it answers at once however
    long the queries take: had the page waited for them, a refresh slower than the
    refresh interval would be dropped as stale by Dash every time, and the page would
    never update.
    """

    def __init__(self, output: str, refresh_s: float, metrics_url: str | None) -> None:
        self.output = output
        self.refresh_s = refresh_s
        self.metrics_url = metrics_url
        self.ready = threading.Event()
        self.value: tuple[charts.Charts, list[dict[str, Any]], float] | None = None
        threading.Thread(target=self._run, name="charts", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                # a new connection each time: it lists the files written since
                built = charts.build(connect(self.output))
                metrics = metric_figures(self.metrics_url) if self.metrics_url else []
                self.value = (built, metrics, time.time())
                self.ready.set()
            except Exception:  # a file that vanished under the query, say: try again
                log.exception("building the charts failed; trying again")
            time.sleep(self.refresh_s)

    def get(self) -> tuple[charts.Charts, list[dict[str, Any]], float]:
        self.ready.wait()
        assert self.value is not None
        return self.value


def make_app(output: str, refresh_s: float, metrics_url: str | None) -> dash.Dash:
    latest = Latest(output, refresh_s, metrics_url)
    app = dash.Dash(__name__, title="Clickstream", serve_locally=True)
    graph: Any = {"displayModeBar": False}
    app.layout = html.Div(
        [
            html.H2("Clickstream"),
            html.Div(
                [
                    html.Span(id="refreshed"),
                    " · newest window end: ",
                    html.Span(id="newest"),
                    " · ",
                    html.Span(id="sessions-drawn"),
                ]
            ),
            dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
            html.Div(
                [
                    dcc.Graph(id="pages-chart", config=graph),
                    dcc.Graph(id="errors-chart", config=graph),
                    dcc.Graph(id="sessions-chart", config=graph),
                    dcc.Graph(id="ip-chart", config=graph),
                ],
                style={"display": "grid", "gridTemplateColumns": "1fr 1fr"},
            ),
            html.Div(
                [
                    html.Div([html.H4("Alerting windows (errors > 5)"), _table("alerts")]),
                    html.Div([html.H4("Pipeline health"), _table("health")]),
                    html.Div(
                        [
                            html.H4("Dead letters and late events"),
                            html.P(id="reasons-empty"),
                            _table("reasons"),
                        ]
                    ),
                    html.Div([html.H4("Metrics"), html.P(id="metrics-empty"), _table("metrics")]),
                ],
                style={"display": "grid", "gridTemplateColumns": "1fr 1fr", "gap": "12px"},
                id="health-panel",
            ),
        ],
        style={"fontFamily": "sans-serif", "margin": "12px"},
    )

    no_metrics = (
        "No figures yet from " + metrics_url
        if metrics_url
        else "None: start the dashboard with --metrics http://HOST:PORT/metrics"
    )

    @app.callback(
        [
            dash.Output("pages-chart", "figure"),
            dash.Output("errors-chart", "figure"),
            dash.Output("sessions-chart", "figure"),
            dash.Output("ip-chart", "figure"),
            dash.Output("alerts", "data"),
            dash.Output("health", "data"),
            dash.Output("reasons", "data"),
            dash.Output("metrics", "data"),
            dash.Output("reasons-empty", "children"),
            dash.Output("metrics-empty", "children"),
            dash.Output("newest", "children"),
            dash.Output("sessions-drawn", "children"),
            dash.Output("refreshed", "children"),
        ],
        dash.Input("tick", "n_intervals"),
    )
    def refresh(_: int | None) -> tuple:
        built, metrics, at = latest.get()
        return (
            built.pages,
            built.errors,
            built.sessions,
            built.ip_activity,
            built.alerts,
            built.health,
            built.reasons,
            metrics,
            "" if built.reasons else "None: every record so far was counted in its windows.",
            "" if metrics else no_metrics,
            built.newest_window_end or "none yet",
            f"{built.sessions_drawn} sessions drawn",
            f"refreshed {time.strftime('%H:%M:%S', time.localtime(at))}",
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.dashboard", description="live charts of the output tables"
    )
    parser.add_argument("--output", default=output_folder())
    port, refresh = dashboard_settings()
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other hosts")
    parser.add_argument(
        "--refresh",
        type=float,
        default=refresh,
        help="seconds between refreshes",
    )
    parser.add_argument("--metrics", help="a /metrics URL whose figures to show")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print(f"dashboard of {args.output} on http://{args.host}:{args.port}/", flush=True)
    make_app(args.output, args.refresh, args.metrics).run(
        host=args.host, port=args.port, debug=False
    )


if __name__ == "__main__":
    main()
