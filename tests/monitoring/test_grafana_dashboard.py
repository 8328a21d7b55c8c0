"""The Grafana dashboard asks only for metrics this pipeline exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import monitoring.metrics  # noqa: F401  (registers the pipeline's metrics)

DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring" / "grafana-dashboard.json"
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, [""]):
            names.add(family.name + suffix)
    return names


def test_every_dashboard_query_uses_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:clickstream|process)_[a-z_]+)\b", e)}
    assert used, "the dashboard should query something"
    missing = used - exported_names()
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    # the list: rates, lag, watermark, late events, dead letters, state size
    for needed in (
        "clickstream_records_read_total",
        "clickstream_consumer_lag_records",
        "clickstream_watermark_timestamp_seconds",
        "clickstream_late_events_total",
        "clickstream_dead_letters_total",
        "clickstream_open_windows",
    ):
        assert needed in used, needed


def firing_alerts_query() -> str:
    """The query of the dashboard's panel of firing alerts (run against a real Prometheus
    in test_alerting.py)."""
    dashboard = json.loads(DASHBOARD.read_text())
    panel = next(p for p in dashboard["panels"] if p["title"] == "Firing alerts")
    expr: str = panel["targets"][0]["expr"]
    return expr


def test_the_dashboard_shows_firing_alerts_and_alert_delivery():
    assert firing_alerts_query().startswith('ALERTS{alertstate="firing"')
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for needed in (
        "clickstream_alerts_posted_total",
        "clickstream_alerts_pending",
        "clickstream_alert_post_failures_total",
        "clickstream_alerts_dropped_total",
    ):
        assert needed in exprs, needed
