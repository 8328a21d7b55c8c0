"""Alerts end to end, against a real Prometheus, a real Alertmanager and the real broker,
with a webhook receiver served by the test standing in for Slack or PagerDuty.

Two `python -m bytewax.run` processes read one topic: A writes its tables and posts
the rows of `errors_per_min_alert` to Alertmanager; B's storage hangs (every file it
writes stays half-written for 10 minutes), so it stalls after its first batch.
Prometheus scrapes both with monitoring/alerts.yml loaded (what fires is asked with the
query of the Grafana dashboard's panel of firing alerts), its durations divided by
20 (`for: 1m` waits 3 s, `[5m]` looks at 15 s) so that a test can wait for them; the
rules themselves, at full scale, are promtool's (test_alert_rules.py).

The events are stamped in the recent past (within `CLICKSTREAM_ALERT_MAX_AGE`) and
produced in two batches, so which windows have rows is known exactly and computed here
from the events, independently of the pipeline.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
from confluent_kafka import Producer

from infra import monitoring
from infra.server import free_port
from kafka_client.settings import KafkaSettings
from tests.monitoring.test_grafana_dashboard import firing_alerts_query
from tests.monitoring.test_metrics import dataflow, scrape, total, wait_for
from tests.processes import clean_env
from tests.tables import read_rows
from tests.webhook import Seen
from tools.produce import create_topics

SECOND = 1000
ERRORS = "errors_per_min_alert"
SCALE = 20


def scaled_rules(target: Path) -> Path:
    """monitoring/alerts.yml with every duration divided by `SCALE`."""
    seconds = {"s": 1, "m": 60, "h": 3600}

    def shrink(m: re.Match) -> str:
        return f"{m[1]}{max(int(m[2]) * seconds[m[3]] // SCALE, 1)}s"

    text = monitoring.RULES.read_text()
    text = re.sub(r"(\[)(\d+)([smh])(?=\])", shrink, text)
    text = re.sub(r"(for: )(\d+)([smh])", shrink, text)
    target.write_text(text)
    return target


def click(ts: int, status: int) -> tuple[int, bytes]:
    page = "GET /index.html HTTP/1.1" if status == 200 else "GET /site/login.html HTTP/1.1"
    value = {
        "ip": "222.90.225.227",
        "userid": 12,
        "remote_user": "-",
        "time": "1",
        "_time": 1,
        "request": page,
        "status": str(status),
        "bytes": "1289",
        "referrer": "-",
        "agent": "Mozilla/5.0",
    }
    return ts, orjson.dumps(value)


def produce(bootstrap: str, topic: str, events: list[tuple[int, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for ts, value in sorted(events, key=lambda e: e[0]):
        producer.produce(topic, value=value, key=b"222.90.225.227", timestamp=ts)
    assert producer.flush(30) == 0


def expected_errors(events: list[tuple[int, bytes]]) -> set[tuple[int, int, int, int]]:
    """errors_per_min_alert by Spark's rules, straight from the events: windows of 60 s
    every 20 s, errors above 5, only the windows the watermark (latest event - 60 s) closed."""
    stamped = [(ts, int(orjson.loads(v)["status"])) for ts, v in events]
    watermark = max(ts for ts, _ in stamped) - 60 * SECOND
    rows = set()
    first = min(ts for ts, _ in stamped) // (20 * SECOND) * 20 * SECOND - 60 * SECOND
    for start in range(first, watermark, 20 * SECOND):
        end = start + 60 * SECOND
        if end > watermark:
            break
        counts: dict[int, int] = {}
        for ts, status in stamped:
            if status > 400 and start <= ts < end:
                counts[status] = counts.get(status, 0) + 1
        rows |= {(s, start, end, n) for s, n in counts.items() if n > 5}
    return rows


def firing(server: monitoring.Server) -> set[tuple[str, str]]:
    """(alertname, instance) of the alerts that fire now, by the query of the dashboard's
    panel of firing alerts."""
    query = urllib.parse.urlencode({"query": firing_alerts_query()})
    with urllib.request.urlopen(f"{server.url}/api/v1/query?{query}", timeout=5) as answer:
        found = json.load(answer)["data"]["result"]
    return {(x["metric"]["alertname"], x["metric"].get("instance", "")) for x in found}


def of(seen: Seen, state: str, **labels: str) -> Seen:
    """The alerts `seen` in `state` (firing, resolved) that carry `labels`."""
    return [a for a in seen if a[0] == state and labels.items() <= a[1].items()]


def test_alert_rows_fire_resolve_and_outlive_an_alertmanager_outage_and_a_stall_fires(
    kafka_bootstrap, topic_name, alertmanager, tmp_path
):
    am, hook = alertmanager
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 1)
    t0 = (int(time.time() * 1000) - 600 * SECOND) // (60 * SECOND) * (60 * SECOND)
    # first batch: a click a second for 4 minutes, 8 404s within 8 s, and 3 405s (too
    # few for a row: 405 must never be alerted)
    first = [click(t0 + i * SECOND, 200) for i in range(241)]
    first += [click(t0 + (65 + i) * SECOND, 404) for i in range(8)]
    first += [click(t0 + (90 + i) * SECOND, 405) for i in range(3)]
    # second, while Alertmanager is away: 4 more minutes, and 9 406s
    second = [click(t0 + i * SECOND, 200) for i in range(241, 481)]
    second += [click(t0 + (300 + i) * SECOND, 406) for i in range(9)]

    port_a, port_b = free_port(), free_port()
    common = {
        "CLICKSTREAM_SOURCE": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CLICKSTREAM_TOPIC": topic_name,
        "CLICKSTREAM_FLUSH_INTERVAL": "0.5",
    }
    env_a = clean_env(
        **common,
        CLICKSTREAM_OUTPUT=str(tmp_path / "out-a"),
        CLICKSTREAM_METRICS_PORT=str(port_a),
        CLICKSTREAM_ALERTMANAGER_URL=am.url,
        CLICKSTREAM_ALERT_RESOLVE_AFTER="5",
    )
    env_b = clean_env(
        **common,
        CLICKSTREAM_OUTPUT=str(tmp_path / "out-b"),
        CLICKSTREAM_METRICS_PORT=str(port_b),
        CLICKSTREAM_TEST_SLOW_WRITES="600",
    )
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    flow = ["dataflows.clickstream:flow"]
    target_b = f"127.0.0.1:{port_b}"
    restarted: monitoring.Server | None = None
    with dataflow(flow, env_a, log_a) as a, dataflow(flow, env_b, log_b) as b:
        wait_for(log_a, "reading from offset", a)
        wait_for(log_b, "reading from offset", b)
        prometheus = monitoring.start_prometheus(
            tmp_path / "prometheus",
            [f"127.0.0.1:{port_a}", target_b],
            f"127.0.0.1:{am.port}",
            rules=scaled_rules(tmp_path / "alerts.yml"),
        )
        try:
            produce(kafka_bootstrap, topic_name, first)

            # 1. the burst of 404s fires, then resolves once no window has rows for it
            hook.wait_for(lambda s: of(s, "firing", alertname=ERRORS, status="404"), "404")
            hook.wait_for(lambda s: of(s, "resolved", alertname=ERRORS, status="404"), "resolve")
            wait_for(log_b, "writing flush", b)  # B is stuck in its first write from now on

            # 2. Alertmanager away for 30 s while 406 rows are written and posted
            am.stop()
            down_at = time.monotonic()
            produce(kafka_bootstrap, topic_name, second)
            undeliverable = stalled = False
            while time.monotonic() - down_at < 30 or not (undeliverable and stalled):
                assert time.monotonic() - down_at < 90, "no operational alerts in Prometheus"
                now = firing(prometheus)  # as the dashboard shows them
                undeliverable |= ("ClickstreamAlertsUndeliverable", f"127.0.0.1:{port_a}") in now
                stalled |= ("ClickstreamStalled", target_b) in now
                assert ("ClickstreamStalled", f"127.0.0.1:{port_a}") not in now
                time.sleep(0.5)
            failed = total(scrape(port_a), "clickstream_alert_post_failures_total")
            assert failed > 0
            assert not of(hook.alerts(), "firing", status="406")
            restarted = monitoring.start_alertmanager(
                Path(am.workdir), monitoring.alertmanager_config(hook.url), port=am.port
            )

            # 3. the held 406 rows reach it, and so does Prometheus' stall alert of B
            hook.wait_for(lambda s: of(s, "firing", alertname=ERRORS, status="406"), "406")
            hook.wait_for(
                lambda s: of(s, "firing", alertname="ClickstreamStalled", instance=target_b),
                "the stall alert",
            )
            b.kill()
            hook.wait_for(
                lambda s: of(s, "firing", alertname="ClickstreamDown", instance=target_b),
                "the down alert",
            )
        finally:
            prometheus.stop()
            if restarted is not None:
                restarted.stop()

        # every row of the table was posted, once; the table is exact
        rows = set(read_rows(tmp_path / "out-a", ERRORS))
        assert rows == expected_errors(first + second)
        samples = scrape(port_a)
        assert total(samples, "clickstream_alerts_posted_total", table=ERRORS) == len(rows)
        assert total(samples, "clickstream_alerts_pending") == 0
        assert total(samples, "clickstream_alerts_dropped_total") == 0
    seen = hook.alerts()
    alerted = {a[1]["status"] for a in seen if a[1]["alertname"] == ERRORS}
    assert alerted == {"404", "406"} == {str(r[0]) for r in rows}
    assert "cannot post to" in log_a.read_text()
    assert "takes alerts again" in log_a.read_text()
