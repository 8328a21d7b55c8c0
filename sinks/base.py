"""What both table sinks (Parquet, Delta) share: the table description, the frame a
flush writes, and the buffering of rows until a flush is due (by size or by time).

A sink partition numbers its flushes (`seq`); its snapshot holds the next `seq` and
the rows it has buffered. How a flush reaches storage, and how a resumed partition
makes sure nothing is stored twice, is each format's own business.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import fsspec
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from config import DEFAULTS
from monitoring.metrics import (
    FILES_WRITTEN,
    FLUSH_INTERVAL,
    FLUSH_SECONDS,
    LAST_FLUSH,
    ROWS_WRITTEN,
)
from ownership import fence
from process import keep_thread_state, stop, stop_on_error
from sinks.alerts import TableAlerts
from storage.location import is_local, output_errors, storage_options
from storage.retries import StorageFailure, StorageRetry
from storage.tables import HIVE_COLUMNS, Table

if TYPE_CHECKING:
    import polars as pl

# Polars is imported by the first flush, not by the start (`storage.tables`).

log = logging.getLogger(__name__)

S = TypeVar("S")


class TableRows(NamedTuple):
    """Rows for one table, each a tuple in the table's column order. The dataflows send
    the same as a plain `(table, rows)` tuple: an item that crosses to another process
    is pickled on its own, and a class would go with it by name."""

    table: str
    rows: list[tuple]


# None is a tick: lets a quiet partition flush on time
SinkItem = TableRows | tuple[str, list[tuple]] | None


def frame(table: Table, rows: list[tuple]) -> pl.DataFrame:
    """The rows as typed columns (timestamps UTC, microseconds) plus `event_date` and
    `event_hour` (strings, UTC) from the table's partition column."""
    import polars as pl

    # The types are given, not inferred from the first rows: a flush whose first hundred
    # rows have a null key (sessions of join misses) made `username` a Null column, and
    # the first name then failed the flush at every restart (found by `just chaos`).
    schema = {c: pl.Int64 if c in table.timestamps else getattr(pl, t) for c, t in table.columns}
    df = pl.DataFrame(rows, schema=schema, orient="row")
    df = df.with_columns(  # the other columns have their types already
        [pl.col(c).cast(pl.Datetime("ms", "UTC")).dt.cast_time_unit("us") for c in table.timestamps]
    )
    stamp = pl.col(table.partition_by).fill_null(datetime.now(UTC))
    return df.with_columns(
        event_date=stamp.dt.strftime("%Y-%m-%d"), event_hour=stamp.dt.strftime("%H")
    )


def hive_parts(df: pl.DataFrame) -> Iterator[tuple[str, str, pl.DataFrame]]:
    """(event_date, event_hour, rows without those two columns) per hive partition."""
    for (date, hour), part in df.partition_by(
        list(HIVE_COLUMNS), as_dict=True, include_key=False
    ).items():
        yield str(date), str(hour), part


def rows_of(df: pl.DataFrame, table: Table) -> list[tuple]:
    """A frame read back from storage as rows in the sink's own form (epoch ms)."""
    import polars as pl

    df = df.select([c for c, _ in table.columns])
    dates = [c for c, t in table.columns if t == "Date"]  # days since the epoch in rows
    return df.with_columns(
        pl.col(list(table.timestamps)).dt.epoch("ms"), pl.col(dates).cast(pl.Int64)
    ).rows()


class BufferedPartition(StatefulSinkPartition[SinkItem, S], Generic[S]):
    """Buffers rows per table and hands them to `write_flush` when a flush is due."""

    def __init__(
        self,
        sink: TableSink,
        part: int,
        seq: int,
        pending: dict[str, list],
        alerts: Sequence[tuple] = (),
    ) -> None:
        self.sink = sink
        # alerts of rows written, not yet accepted by Alertmanager (`sinks.alerts`)
        self.outbox = sink.alerts.outbox(alerts) if sink.alerts is not None else None
        self.part = part
        self.name = f"{sink.flow}-p{part:03d}"
        self.seq = seq
        self.pending: dict[str, list[tuple]] = {}
        self.pending_rows = 0
        self.oldest: float | None = None
        self.written = 0
        self.token = 0  # the fencing token of the flush being written (see `ownership`)
        for table, rows in pending.items():
            self.buffer(table, list(rows))

    def file_name(self) -> str:
        """The name of this flush's file in each hive partition: the flow, partition, flush
        number and the writer's fencing token."""
        token = f"-t{self.token}" if self.token else ""
        return f"{self.name}-{self.seq:010d}{token}.parquet"

    def write_flush(self, pending: dict[str, list[tuple]]) -> dict[str, int]:
        """Store one flush (numbered `self.seq`); returns the files written per table."""
        raise NotImplementedError

    def admit(self, table: str, rows: list[tuple]) -> list[tuple]:
        """The rows to buffer out of those given (all of them unless a format says not)."""
        return rows

    def durable(self, rows: dict[str, list[tuple]]) -> None:
        """`rows` are stored for good: those of alert tables go to Alertmanager."""
        if self.outbox is not None and self.sink.alerts is not None:
            alerts = self.sink.alerts
            self.outbox.put([a for t, r in rows.items() for a in alerts.alerts(t, r)])

    def saved_alerts(self) -> list[tuple]:
        """The alerts for the snapshot: written, not accepted by Alertmanager yet."""
        return self.outbox.saved() if self.outbox is not None else []

    def buffer(self, table: str, rows: list[tuple]) -> None:
        rows = self.admit(table, rows)
        if not rows:
            return
        self.pending.setdefault(table, []).extend(rows)
        self.pending_rows += len(rows)
        if self.oldest is None:
            self.oldest = time.monotonic()

    def write_batch(self, values: list[SinkItem]) -> None:
        with self.sink.stop_on_failure():
            for item in values:
                if item is not None:
                    table, rows = item  # a `TableRows`, or the same as a plain tuple
                    if rows:
                        self.buffer(table, rows)
            if self.pending_rows >= self.sink.flush_rows or (
                self.oldest is not None
                and time.monotonic() - self.oldest >= self.sink.flush_interval_s
            ):
                self.flush()

    def flush(self) -> None:
        if not self.pending_rows:
            return
        log.info("sink %s: writing flush %d (%d rows)", self.name, self.seq, self.pending_rows)
        started = time.monotonic()
        self.token = fence()
        files = self.write_flush(self.pending)
        self.durable(self.pending)
        flow = self.sink.flow
        for table, rows in self.pending.items():
            ROWS_WRITTEN.labels(flow, table).inc(len(rows))
            FILES_WRITTEN.labels(flow, table).inc(files.get(table, 0))
        FLUSH_SECONDS.labels(flow).observe(time.monotonic() - started)
        LAST_FLUSH.labels(flow).set(time.time())
        log.info(
            "sink %s: wrote %d rows in %d files (flush %d)",
            self.name,
            self.pending_rows,
            sum(files.values()),
            self.seq,
        )
        self.written += self.pending_rows
        self.seq += 1
        self.pending = {}
        self.pending_rows = 0
        self.oldest = None

    def close(self) -> None:
        with stop_on_error(f"sink {self.name}: closing"), self.sink.stop_on_failure():
            self.flush()
        log.info("sink %s: closed after %d rows", self.name, self.written)
        if self.outbox is not None:
            with stop_on_error(f"sink {self.name}: closing"):
                self.outbox.drain(timeout_s=10.0)


class TableSink(FixedPartitionedSink[SinkItem, S], Generic[S]):
    """A sink of `TableRows` under one output location; keys route to `parts` partitions.

    Item keys are partition numbers as strings (`"0"`..`"parts-1"`), so every
    partition can be sent a tick. The number of partitions is part of the
    recovery state: keep it fixed for an output location.
    """

    def __init__(
        self,
        root: str,
        flow: str,
        tables: Sequence[Table],
        *,
        parts: int = 4,
        flush_interval_s: float = DEFAULTS.flush_interval_s,
        flush_rows: int = DEFAULTS.flush_rows,
        fs_options: dict[str, Any] | None = None,
        slow_writes_s: float = 0.0,
        storage_retry_s: float = DEFAULTS.storage_retry_s,
        alerts: TableAlerts | None = None,
    ) -> None:
        self.url = root.rstrip("/")
        options = storage_options(root) if fs_options is None else fs_options
        self.fs, path = fsspec.core.url_to_fs(root, **options)
        self.root = path.rstrip("/")
        self.local = is_local(self.fs)
        self.flow = flow
        self.tables = {t.name: t for t in tables}
        self.parts = parts
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        # Test aid only: hold every file open this long, so crash tests can kill mid-write.
        self.slow_writes_s = slow_writes_s
        # Every storage request of this sink: retried within the budget, counted.
        self.retry = StorageRetry(flow, storage_retry_s)
        self.alerts = alerts
        FLUSH_INTERVAL.labels(flow).set(flush_interval_s)
        LAST_FLUSH.labels(flow).set(time.time())  # "no flush for long" counts from the start

    def check(self) -> None:
        """Check the tables under the output before the run (a `ConfigError` if unfit;
        `Unreachable`, exit 75, when the storage stops answering meanwhile); writes
        nothing."""
        with output_errors(self.url):
            self._check()

    def prepare(self) -> None:
        """`check`, then make what the run needs under the output."""
        with output_errors(self.url):
            self._prepare()

    def _check(self) -> None:
        """What this format checks (see `check`)."""

    def _prepare(self) -> None:
        self._check()

    def list_parts(self) -> list[str]:
        keep_thread_state()  # Bytewax calls this on every worker as it builds the dataflow
        return [str(i) for i in range(self.parts)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    @contextmanager
    def stop_on_failure(self) -> Iterator[None]:
        """A storage error that will not heal stops the process with one line."""
        try:
            yield
        except StorageFailure as ex:
            stop(f"CLICKSTREAM_OUTPUT {self.url}: {ex}")

    def write_file(self, df: pl.DataFrame, directory: str, path: str) -> int:
        """Write `df` as one zstd Parquet file that readers see whole or not at all;
        returns its size in bytes."""
        fs = self.fs
        # The lease is checked right before a file becomes visible: a process paused
        # mid-write and taken over meanwhile stops here instead.
        if self.local:

            def write_local() -> int:
                fs.makedirs(directory, exist_ok=True)
                hidden = f"{directory}/.{path.rsplit('/', 1)[1]}.tmp"
                df.write_parquet(hidden, compression="zstd")
                time.sleep(self.slow_writes_s)
                fence()
                os.replace(hidden, path)  # atomic: readers see the whole file or none
                return os.path.getsize(path)

            return self.retry(write_local, f"write {path}")

        def upload() -> int:
            with fs.open(path, "wb") as f:
                df.write_parquet(f, compression="zstd")
                time.sleep(self.slow_writes_s)
                fence()  # the object is uploaded when `f` closes
                return int(f.tell())

        return self.retry(upload, f"upload {path}")
