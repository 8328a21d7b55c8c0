"""Steps both table dataflows share: read and parse, and write every table."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from config import DEFAULTS, Settings, slow_writes_for_tests
from events.parse import DeadLetter, Parser, reason_kind
from events.schema import RawBatch
from events.streams import KAFKA_COLUMNS, event_type
from events.streams import Stream as DeclaredStream
from monitoring.health import HEALTH
from monitoring.metrics import DEAD_LETTERS_TOTAL, LATE_EVENTS_TOTAL, watch_windows
from monitoring.server import serve
from operators.batches import TimedBatch
from operators.windows import LateEvent, Session, WindowOut, WindowRow, window_aggregate
from ownership import claim, fence
from process import await_lower_processes, exit_on_config_error, on_sigterm, one_line_panics
from setting import ConfigError
from sinks.alerts import AlertPoster, AlertTable, TableAlerts
from sinks.base import SinkItem, TableSink
from sinks.parquet import ParquetSink
from sources import source_for
from sources.schemas import with_registry_columns
from sql import REPO_STREAMS, REPO_TABLES, SqlTable, all_streams, load_tables
from storage.location import check_output
from storage.retries import quiet_gcsfs_retries
from storage.tables import DEAD_LETTERS, LATE_EVENTS, Table

log = logging.getLogger(__name__)

SINK_PARTS = 4


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    quiet_gcsfs_retries()


def flow_from_env(build: Callable[[Settings], Dataflow]) -> Dataflow:
    """Build a dataflow from the environment; a bad setting exits with one line.

    Also starts `/metrics` and `/health` when `CLICKSTREAM_METRICS_PORT` is set.
    """
    setup_logging()
    with exit_on_config_error():
        settings = Settings.from_env()
        HEALTH.stall_timeout_s = settings.stall_timeout_s
        if settings.metrics_port is not None:
            serve(settings.metrics_port, settings.metrics_linger_s)
        flow = build(settings)
    one_line_panics(flow.flow_id)
    on_sigterm(flow.flow_id)
    await_lower_processes()
    return flow


def stream_tables(settings: Settings, stream: str) -> Dataflow:
    """The dataflow named `stream` that computes every table whose SQL reads it."""
    streams = all_streams(settings.streams)
    declared = streams.get(stream.lower())
    if declared is None:
        raise ConfigError(
            f"no stream {stream} in {settings.streams or REPO_STREAMS} or the repo's "
            f"(streams: {', '.join(sorted(streams))})"
        )
    if not declared.columns:  # the columns are the registry's
        streams |= with_registry_columns({declared.name: declared}, settings.kafka)
        declared = streams[declared.name]
    flow = Dataflow(declared.name)
    folder = settings.tables or REPO_TABLES
    tables = [
        t
        for t in load_tables(folder, streams=streams, only=declared.name)
        if t.stream == declared.name
    ]
    reads = frozenset(c for t in tables for c in t.reads)
    raw, events, dead = read_events(flow, settings, declared, reads)
    write_tables(flow, settings, raw, dead, window_tables(events, tables))
    return flow


def read_events(
    flow: Dataflow,
    settings: Settings,
    stream: DeclaredStream,
    reads: frozenset[str] | None = None,
) -> tuple[Stream[RawBatch], Stream[TimedBatch[Any]], Stream[list[DeadLetter]]]:
    """Read the records of `stream` and parse them into events of the columns the tables
    `reads` (None: all), Kafka's among them; returns raw batches, events, dead letters."""
    # Window state is many small long-lived objects; the default collector thresholds
    # make Python rescan them all the time (measured: +4% to +21% throughput).
    gc.set_threshold(50_000, 20, 100)
    raw = op.input("read", flow, source_for(settings, stream, flow.flow_id, f"{flow.flow_id}.read"))
    # A process that lost its lease (paused, then woken) stops here, before its next
    # batch can reach a table or a snapshot.
    raw = op.map("fence", raw, _fenced)
    value_format = stream.value_format or (
        settings.kafka.value_format if settings.kafka else "json"
    )
    parser = Parser(
        event_type(stream, reads),
        flow.flow_id,
        value_format=value_format,
        permissive=True,
        kafka_columns=tuple(sorted(set(reads or ()) & set(KAFKA_COLUMNS))),
    )
    parsed = op.map("parse", raw, parser)
    events = op.map("events", parsed, attrgetter("events"))
    dead = op.filter_map("dead", parsed, lambda p: p.dead or None)
    return raw, events, dead


def _fenced(batch: RawBatch) -> RawBatch:
    fence()
    return batch


class _Ticker:
    """Sends every sink partition a tick at most once a second, so a quiet one still flushes."""

    def __init__(self, parts: int) -> None:
        self.parts = parts
        self.last = 0.0

    def __call__(self, _batch: object) -> list[tuple[str, SinkItem]]:
        now = time.monotonic()
        if now - self.last < 1.0:
            return []
        self.last = now
        return [(str(i), None) for i in range(self.parts)]


def _route(table: str) -> str:
    # One table per sink partition keeps files few and large; stable across processes.
    return str(sum(table.encode()) % SINK_PARTS)


def window_tables(
    events: Stream[TimedBatch[Any]], tables: list[SqlTable]
) -> list[tuple[SqlTable, WindowOut]]:
    """A window operator for each of `tables`."""
    return [
        (
            t,
            window_aggregate(
                t.name, events, t.key, t.window, t.delay_ms, t.aggregates, t.where, t.having
            ),
        )
        for t in tables
    ]


def table_alerts(
    settings: Settings, flow: str, windows: Sequence[tuple[SqlTable, WindowOut]]
) -> TableAlerts | None:
    """The alert tables among `windows` and where their rows are posted; None when
    `CLICKSTREAM_ALERTMANAGER_URL` is unset or none of them is an alert."""
    folder = settings.tables or REPO_TABLES
    wanted = {n.strip() for n in settings.alert_tables.split(",") if n.strip()}
    known = {p.stem for p in Path(folder).glob("*.sql")}
    unknown = wanted - known
    if unknown and settings.alert_tables == DEFAULTS.alert_tables:
        # the default names the repo's table: a folder of other tables has no alerts
        if settings.alertmanager_url is not None:
            log.warning("alerts: no table %s in %s; set CLICKSTREAM_ALERT_TABLES", *unknown, folder)
    elif unknown:
        raise ConfigError(
            f"CLICKSTREAM_ALERT_TABLES: no table {', '.join(sorted(unknown))} in "
            f"{folder} (tables: {', '.join(sorted(known))})"
        )
    if settings.alertmanager_url is None:
        return None
    tables = []
    for sql, _ in windows:
        if sql.name not in wanted:
            continue
        window = sql.window
        step = window.gap_ms if isinstance(window, Session) else window.slide_ms
        resolve_after = settings.alert_resolve_after_s
        if resolve_after is None:
            resolve_after = 2 * step / 1000 + settings.flush_interval_s
        length = None if isinstance(window, Session) else window.length_ms
        columns = [c for c, _ in sql.table.columns]
        tables.append(AlertTable(sql.name, columns, sql.roles, length, resolve_after))
        log.info(
            "alerts: rows of %s go to %s (each resolves %g s after its last row)",
            sql.name,
            settings.alertmanager_url,
            resolve_after,
        )
    if not tables:
        return None
    poster = AlertPoster(settings.alertmanager_url, flow, settings.alert_max_age_s)
    return TableAlerts(tables, poster, settings.alert_buffer)


def write_tables(
    flow: Dataflow,
    settings: Settings,
    raw: Stream[RawBatch],
    dead: Stream[list[DeadLetter]],
    windows: Sequence[tuple[SqlTable, WindowOut]],
) -> None:
    """Write each window table, its late events and the dead letters, exactly once."""
    name = flow.flow_id
    streams: list[Stream[tuple[str, SinkItem]]] = []
    for sql, out in windows:
        table = sql.table

        def counts_rows(
            counts: list[WindowRow], table: Table = table, row: Callable = sql.row
        ) -> tuple[str, SinkItem]:
            rows = [row(c.key, c.start_ms, c.end_ms, c.value) for c in counts]
            return _route(table.name), (table.name, rows)

        watch_windows(name, table.name, out.stats)
        late_counter = LATE_EVENTS_TOTAL.labels(name, table.name)

        def late_rows(
            late: list[LateEvent], table: Table = table, counter: Any = late_counter
        ) -> tuple[str, SinkItem]:
            counter.inc(len(late))
            rows = [
                (
                    name,
                    table.name,
                    None if e.key is None else str(e.key),
                    e.event_time_ms,
                    e.watermark_ms,
                    e.windows_missed,
                    e.windows_total,
                    e.reason,
                    *(e.origin or (None, None, None)),
                )
                for e in late
            ]
            return _route(LATE_EVENTS.name), (LATE_EVENTS.name, rows)

        streams.append(op.map(f"{table.name}_rows", out.counts, counts_rows))
        streams.append(op.map(f"{table.name}_late_rows", out.late, late_rows))

    def dead_rows(dead: list[DeadLetter]) -> tuple[str, SinkItem]:
        for kind, n in Counter(reason_kind(d.reason) for d in dead).items():
            DEAD_LETTERS_TOTAL.labels(name, kind).inc(n)
        rows = [(name, *d) for d in dead]
        return _route(DEAD_LETTERS.name), (DEAD_LETTERS.name, rows)

    streams.append(op.map("dead_letter_rows", dead, dead_rows))
    streams.append(op.flat_map("ticks", raw, _Ticker(SINK_PARTS)))
    tables = [sql.table for sql, _ in windows] + [LATE_EVENTS, DEAD_LETTERS]
    check_output(settings.output)
    options: dict[str, Any] = {
        "parts": SINK_PARTS,
        "flush_interval_s": settings.flush_interval_s,
        "flush_rows": settings.flush_rows,
        "slow_writes_s": slow_writes_for_tests(),
        "storage_retry_s": settings.storage_retry_s,
        "alerts": table_alerts(settings, name, windows),
    }
    sink: TableSink
    if settings.table_format == "delta":
        from sinks.delta import DeltaSink  # deltalake: only a Delta run imports it

        compact = settings.delta_compact_closed_hours
        sink = DeltaSink(settings.output, name, tables, compact_closed_hours=compact, **options)
    else:
        sink = ParquetSink(settings.output, name, tables, **options)
    sink.check()
    # Only now, with every setting and the output found fit, take the lease: nothing
    # before this line writes, so a refused or failed start changes nothing.
    definition = {sql.name: sql.definition for sql, _ in windows}
    earlier = {sql.name: sql.earlier[0] for sql, _ in windows if sql.earlier}
    claim(settings, name, definition | {t.name: "rows" for t in tables[len(windows) :]}, earlier)
    sink.prepare()
    op.output("write", op.merge("rows", *streams), sink)
