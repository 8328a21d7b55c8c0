"""Rows of alert tables as Alertmanager alerts: what each row becomes, the outbox's bound,
and (against a real Alertmanager) that a row written before a crash is posted after the
resume, from the snapshot or from the replay, in both table formats; too old rows are not."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from config import Settings
from dataflows.common import table_alerts
from infra.server import free_port
from setting import ConfigError
from sinks.alerts import Alert, AlertPoster, AlertTable, TableAlerts
from sinks.base import BufferedPartition, TableRows, TableSink
from sinks.delta import DeltaSink
from sinks.parquet import ParquetSink
from sql import load_tables

SECOND = 1000
NOW = int(time.time() * 1000) // (20 * SECOND) * (20 * SECOND)
ERRORS = "errors_per_min_alert"


def sql_table(name: str):
    return next(t for t in load_tables() if t.name == name)


def alert_table(name: str, env: dict[str, str] | None = None) -> AlertTable:
    settings = Settings.from_env(
        {"CLICKSTREAM_ALERTMANAGER_URL": "http://127.0.0.1:1", "CLICKSTREAM_ALERT_TABLES": name}
        | (env or {})
    )
    found = table_alerts(settings, "clickstream", [(sql_table(name), None)])  # type: ignore[list-item]
    assert found is not None
    return found.tables[name]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_errors_row_is_an_alert_labelled_by_its_status():
    table = alert_table(ERRORS)
    # two 20 s slides and the 4 s flush interval: the next window's row comes before
    assert table.resolve_after_s == 44
    alert = table.alert((404, NOW - 120 * SECOND, NOW - 60 * SECOND, 7), "clickstream")
    assert alert.labels == {"alertname": ERRORS, "dataflow": "clickstream", "status": "404"}
    assert alert.annotations["errors"] == "7"
    assert alert.annotations["summary"].startswith(f"{ERRORS}: errors=7 for status=404 in ")
    payload = alert.payload(now_ms=NOW)
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((NOW - 120 * SECOND) / 1000))
    ends = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW / 1000 + 44))
    assert payload["startsAt"] == f"{start}.000+00:00"
    assert payload["endsAt"] == f"{ends}.000+00:00"
    assert alert.payload(now_ms=NOW + 5 * SECOND)["endsAt"] > payload["endsAt"]


def test_a_session_row_keeps_its_end_and_a_null_key_is_no_label():
    table = alert_table("click_user_sessions", {"CLICKSTREAM_ALERT_RESOLVE_AFTER": "3"})
    assert table.resolve_after_s == 3
    row = (None, NOW - 50 * SECOND, NOW - 5 * SECOND, 12)
    alert = table.alert(row, "user_clickstream")
    assert alert.labels == {"alertname": "click_user_sessions", "dataflow": "user_clickstream"}
    assert alert.end_ms == NOW - 5 * SECOND
    assert "for all in" in alert.annotations["summary"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLICKSTREAM_ALERT_TABLES": "errors_per_min,pages_per_min"}, "no table errors_per_min"),
        ({"CLICKSTREAM_ALERTMANAGER_URL": "alertmanager:9093"}, "not an http:// or https:// URL"),
        ({"CLICKSTREAM_ALERT_MAX_AGE": "-1"}, "CLICKSTREAM_ALERT_MAX_AGE"),
    ],
)
def test_bad_alert_settings_are_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        settings = Settings.from_env({"CLICKSTREAM_ALERTMANAGER_URL": "http://127.0.0.1:1", **env})
        table_alerts(settings, "clickstream", [])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_no_url_or_no_alert_table_in_the_dataflow_means_no_alerts():
    assert table_alerts(Settings.from_env({}), "clickstream", []) is None
    settings = Settings.from_env({"CLICKSTREAM_ALERTMANAGER_URL": "http://127.0.0.1:1"})
    pages = sql_table("pages_per_min")
    assert table_alerts(settings, "clickstream", [(pages, None)]) is None  # type: ignore[list-item]


def test_a_full_outbox_drops_the_oldest_counts_them_and_keeps_the_newer_for_posting():
    poster = AlertPoster("http://127.0.0.1:1", "outbox-test", max_age_s=900)
    box = poster.outbox(capacity=3, saved=[])
    table = alert_table(ERRORS)
    alerts = [table.alert((400 + i, NOW, NOW + 60 * SECOND, 6), "outbox-test") for i in range(5)]
    box.put(alerts[:2])
    last, _ = box.peek(10)  # a post of these two is under way...
    box.put(alerts[2:])  # ...when three more come: the oldest goes
    dropped = metric(
        "clickstream_alerts_dropped_total", dataflow="outbox-test", reason="buffer full"
    )
    assert dropped == 2
    box.done(last)  # the post succeeded: alerts[1] leaves, the newer stay
    assert [Alert(*a) for a in box.saved()] == alerts[2:]
    assert len(box) == 3


def active_alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as answer:
        found: list[dict] = json.load(answer)
    return found


def sink_with_alerts(kind: str, out: Path, url: str, flow: str) -> TableSink:
    table = alert_table(ERRORS, {"CLICKSTREAM_ALERT_RESOLVE_AFTER": "60"})
    alerts = TableAlerts([table], AlertPoster(url, flow, max_age_s=900), capacity=100)
    errors = sql_table(ERRORS).table
    sink: TableSink
    if kind == "delta":
        sink = DeltaSink(str(out), flow, [errors], parts=1, flush_rows=1, alerts=alerts)
    else:
        sink = ParquetSink(str(out), flow, [errors], parts=1, flush_rows=1, alerts=alerts)
    sink.prepare()
    return sink


@pytest.mark.parametrize("kind", ["parquet", "delta"])
@pytest.mark.parametrize("crash", ["after the snapshot", "before the snapshot"])
def test_a_row_written_before_a_crash_is_posted_after_the_resume(
    kind, crash, alertmanager, tmp_path
):
    am, _ = alertmanager
    away = f"http://127.0.0.1:{free_port()}"  # nothing listens: posts fail
    flow = f"crash-{kind}-{crash.split()[0]}"
    rows = [(404, NOW - 120 * SECOND, NOW - 60 * SECOND, 7)]
    part = sink_with_alerts(kind, tmp_path, away, flow).build_part("out", "0", None)
    assert isinstance(part, BufferedPartition)
    state = part.snapshot()
    part.write_batch([TableRows(ERRORS, rows)])  # written at once (flush_rows=1)
    assert part.outbox is not None and len(part.outbox) == 1, "written, not accepted"
    if crash == "after the snapshot":
        state = part.snapshot()  # the outbox is in it
    del part  # kill -9

    resumed = sink_with_alerts(kind, tmp_path, am.url, flow).build_part("out", "0", state)
    assert isinstance(resumed, BufferedPartition)
    if crash == "before the snapshot":
        resumed.write_batch([TableRows(ERRORS, rows)])  # the replay brings the row again
    # until its outbox is empty: Alertmanager shows the alert as soon as it takes the
    # post, a moment before the poster hears the answer and counts it
    assert resumed.outbox is not None
    deadline = time.monotonic() + 20
    while len(resumed.outbox):
        assert time.monotonic() < deadline, "the alert never reached Alertmanager"
        time.sleep(0.2)
    found = active_alerts(am.url)
    assert [a["labels"] for a in found] == [
        {"alertname": ERRORS, "dataflow": flow, "status": "404"}
    ]
    assert metric("clickstream_alerts_posted_total", dataflow=flow, table=ERRORS) == 1


def test_rows_whose_window_ended_longer_ago_than_the_max_age_are_not_posted(alertmanager, tmp_path):
    am, _ = alertmanager
    part = sink_with_alerts("parquet", tmp_path, am.url, "too-old").build_part("out", "0", None)
    old = (404, NOW - 3600 * SECOND, NOW - 3540 * SECOND, 9)  # a backfill of an hour ago
    recent = (406, NOW - 120 * SECOND, NOW - 60 * SECOND, 6)
    part.write_batch([TableRows(ERRORS, [old, recent])])
    part.close()  # waits until the outbox is empty
    assert [a["labels"]["status"] for a in active_alerts(am.url)] == ["406"]
    assert metric("clickstream_alert_rows_too_old_total", dataflow="too-old", table=ERRORS) == 1
    assert metric("clickstream_alerts_posted_total", dataflow="too-old", table=ERRORS) == 1


def test_a_too_old_row_is_counted_once_however_often_its_batch_is_retried():
    away = f"http://127.0.0.1:{free_port()}"  # nothing listens: posts fail
    poster = AlertPoster(away, "retried", max_age_s=900)
    table = alert_table(ERRORS)
    old = table.alert((404, NOW - 3600 * SECOND, NOW - 3540 * SECOND, 9), "retried")
    recent = table.alert((406, NOW - 120 * SECOND, NOW - 60 * SECOND, 6), "retried")
    poster.outbox(capacity=10, saved=[]).put([old, recent])
    deadline = time.monotonic() + 20
    while metric("clickstream_alert_post_failures_total", dataflow="retried") < 2:
        assert time.monotonic() < deadline, "the poster did not try twice"
        time.sleep(0.1)
    # not settled yet: counted when its batch is (posted, or dropped)
    assert metric("clickstream_alert_rows_too_old_total", dataflow="retried", table=ERRORS) == 0
    assert metric("clickstream_alerts_pending", dataflow="retried") == 2
