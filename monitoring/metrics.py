"""The pipeline's Prometheus metrics, in the default registry.

Counters are bumped once per batch (a source batch, a list of late events, a
flush), never per record, so keeping them costs nothing measurable (`just bench`
has the row). Window state (watermark, open windows) is not pushed at all: it is
read from the live operators when Prometheus scrapes.

Bytewax's own per-step metrics are served by Bytewax's API server
(`BYTEWAX_DATAFLOW_API_ENABLED=1`, port 3030), which includes these too.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring.health import HEALTH

# `_created` series double the output and no dashboard here uses them
disable_created_metrics()

RECORDS_READ = Counter(
    "clickstream_records_read",
    "Records read from the input, per Kafka topic and partition.",
    ["dataflow", "topic", "partition"],
)
RECORDS_LOST = Counter(
    "clickstream_records_lost",
    "Records deleted from Kafka (retention) before they were read, per topic and partition;"
    " counted only with CLICKSTREAM_FAIL_ON_DATA_LOSS=false, which reads on past the gap.",
    ["dataflow", "topic", "partition"],
)
DEAD_LETTERS_TOTAL = Counter(
    "clickstream_dead_letters",
    "Records set aside in dead_letters, per kind of reason.",
    ["dataflow", "reason"],
)
LATE_EVENTS_TOTAL = Counter(
    "clickstream_late_events",
    "Rows written to late_events: records that missed some or all of a table's windows.",
    ["dataflow", "table"],
)
ROWS_WRITTEN = Counter(
    "clickstream_rows_written", "Rows written to the output tables.", ["dataflow", "table"]
)
FILES_WRITTEN = Counter(
    "clickstream_files_written", "Files written to the output tables.", ["dataflow", "table"]
)
LAST_FLUSH = Gauge(
    "clickstream_last_flush_timestamp_seconds",
    "When a sink partition last wrote its buffered rows, or the sink started (Unix time).",
    ["dataflow"],
)
FLUSH_INTERVAL = Gauge(
    "clickstream_flush_interval_seconds",
    "CLICKSTREAM_FLUSH_INTERVAL: buffered rows are written at least this often.",
    ["dataflow"],
)
FLUSH_SECONDS = Histogram(
    "clickstream_flush_duration_seconds",
    "Time to write one flush (all its files) to storage.",
    ["dataflow"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
STORAGE_RETRIES = Counter(
    "clickstream_storage_retries",
    "Storage requests retried after a transient error (our retries, after gcsfs's own).",
    ["dataflow"],
)
SCHEMA_REGISTRY_RETRIES = Counter(
    "clickstream_schema_registry_retries",
    "Batches held back because the Schema Registry did not answer for a new schema id; "
    "each is asked again, never dead-lettered.",
    ["dataflow"],
)
ALERTS_POSTED = Counter(
    "clickstream_alerts_posted",
    "Rows of alert tables accepted by Alertmanager (CLICKSTREAM_ALERTMANAGER_URL).",
    ["dataflow", "table"],
)
ALERTS_PENDING = Gauge(
    "clickstream_alerts_pending",
    "Alerts written to their table and not yet accepted by Alertmanager.",
    ["dataflow"],
)
ALERT_POST_FAILURES = Counter(
    "clickstream_alert_post_failures",
    "Posts to Alertmanager that failed (no answer, or HTTP 5xx); each is tried again.",
    ["dataflow"],
)
ALERTS_DROPPED = Counter(
    "clickstream_alerts_dropped",
    "Alerts never posted: the outbox was full (CLICKSTREAM_ALERT_BUFFER), or Alertmanager "
    "refused them (HTTP 4xx).",
    ["dataflow", "reason"],
)
ALERT_ROWS_TOO_OLD = Counter(
    "clickstream_alert_rows_too_old",
    "Rows of alert tables not posted because their window ended longer ago than "
    "CLICKSTREAM_ALERT_MAX_AGE (a backfill).",
    ["dataflow", "table"],
)
CONSUMER_LAG = Gauge(
    "clickstream_consumer_lag_records",
    "Kafka end offset minus the next offset to read, per partition.",
    ["dataflow", "topic", "partition"],
)
JOIN_TABLE_SIZE = Gauge(
    "clickstream_join_table_rows",
    "Rows held in the lookup table of a join (users of enrich).",
    ["dataflow", "join"],
)
SINK_KEPT_ORIGINS = Gauge(
    "clickstream_kafka_sink_kept_origins",
    "Inputs the Kafka sink found already written and waits to see again after a restart.",
    ["dataflow", "topic", "part"],
)


class WindowStats(Protocol):
    """What a window operator tells about its state (`operators.windows.WindowStats`)."""

    def watermark_ms(self) -> int | None: ...

    def open_windows(self) -> int: ...


class _WindowCollector(Collector):
    """Watermark and open windows of every table, read from its shards at scrape time."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], weakref.ref[WindowStats]] = {}

    def watch(self, dataflow: str, table: str, stats: WindowStats) -> None:
        self.tables[(dataflow, table)] = weakref.ref(stats)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        watermark = GaugeMetricFamily(
            "clickstream_watermark_timestamp_seconds",
            "Event-time watermark of a table (Unix time): windows ending before it are final.",
            labels=["dataflow", "table"],
        )
        open_windows = GaugeMetricFamily(
            "clickstream_open_windows",
            "Window state held: (key, pane) counts of sliding and tumbling windows, open sessions.",
            labels=["dataflow", "table"],
        )
        for (dataflow, table), ref in list(self.tables.items()):
            stats = ref()
            if stats is None:
                continue
            wm = stats.watermark_ms()
            if wm is not None:
                watermark.add_metric([dataflow, table], wm / 1000.0)
            open_windows.add_metric([dataflow, table], stats.open_windows())
        yield watermark
        yield open_windows


_windows = _WindowCollector()
REGISTRY.register(_windows)


def watch_windows(dataflow: str, table: str, stats: WindowStats) -> None:
    """Export a `count_window`'s watermark and state size as the table's."""
    _windows.watch(dataflow, table, stats)


class InputMeter:
    """Metrics and health of one source partition, updated once per batch.

    ```python
    meter = InputMeter("clickstream", "clickstream#0")
    meter.read("clickstream", 0, len(batch))       # records read
    meter.watch_lag("clickstream", 0, lambda: end_offset - next_offset)  # read at scrape
    meter.polled(len(batch), waiting=lag > 0)
    ```
    """

    def __init__(self, dataflow: str, part: str) -> None:
        self.dataflow = dataflow
        self.part = part
        self.children: dict[tuple[str, int], Counter] = {}

    def read(self, topic: str, partition: int, n: int) -> None:
        child = self.children.get((topic, partition))
        if child is None:
            child = self.children[(topic, partition)] = RECORDS_READ.labels(
                self.dataflow, topic, str(partition)
            )
        child.inc(n)

    def lost(self, topic: str, partition: int, records: int) -> None:
        RECORDS_LOST.labels(self.dataflow, topic, str(partition)).inc(records)

    def watch_lag(self, topic: str, partition: int, lag: Callable[[], float]) -> None:
        """Export `lag()` as the partition's lag, asked at every scrape: it stays true
        while the worker is busy elsewhere (in a sink that cannot write, say)."""
        CONSUMER_LAG.labels(self.dataflow, topic, str(partition)).set_function(lag)
        # a loss is counted from zero: a rule on its increase sees the first one
        RECORDS_LOST.labels(self.dataflow, topic, str(partition))

    def polled(self, read: int, waiting: bool) -> None:
        HEALTH.polled(self.part, read, waiting)

    def registry_retry(self) -> None:
        SCHEMA_REGISTRY_RETRIES.labels(self.dataflow).inc()

    def finished(self) -> None:
        HEALTH.finished(self.part)
