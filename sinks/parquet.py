"""Partitioned Parquet tables, written through fsspec (local paths, gs://, ...).

Layout: `<root>/<table>/event_date=YYYY-MM-DD/event_hour=HH/<flow>-p<part>-<seq>.parquet`,
hive partitions from each table's time column (UTC), files built with Polars
(zstd), readable by Polars, DuckDB, Spark and BigQuery. The partition columns are
in the path only, as those readers expect.

Exactly once: each sink partition numbers its flushes (`seq`). Its snapshot is the
next `seq` plus the rows it has buffered. A partition built from a snapshot first
deletes its own files numbered `seq` or above: whatever an interrupted run wrote
after that snapshot. The replayed input then writes those rows again, so every
row is stored once. A partition built without a snapshot owns nothing yet and
deletes all its own files: a rerun replaces, never adds.

Readers never see half a file: a local file is written under a hidden name and
renamed; a GCS object becomes visible only when its single upload completes.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar

import fsspec
import polars as pl
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from monitoring.metrics import (
    FILES_WRITTEN,
    FLUSH_SECONDS,
    LAST_FLUSH,
    ROWS_WRITTEN,
    STORAGE_RETRIES,
)
from sinks.storage import StorageFailure, is_local, retry, stop, storage_options

log = logging.getLogger(__name__)


T = TypeVar("T")


@dataclass(frozen=True)
class Table:
    """One output table: column names and types in row order.

    `timestamps` name the columns given as epoch milliseconds in rows and stored as
    UTC timestamps; `partition_by` is the one the hive partitions come from.
    """

    name: str
    columns: Sequence[tuple[str, pl.DataType | type[pl.DataType]]]
    partition_by: str
    timestamps: frozenset[str] = field(default_factory=frozenset)


class TableRows(NamedTuple):
    """Rows for one table, each a tuple in the table's column order."""

    table: str
    rows: list[tuple]


SinkItem = TableRows | None  # None is a tick: lets a quiet partition flush on time
SinkState = tuple[int, dict[str, list[tuple]]]


class _ParquetPartition(StatefulSinkPartition[SinkItem, SinkState]):
    def __init__(self, sink: ParquetSink, part: int, resume: SinkState | None) -> None:
        self.sink = sink
        self.part = part
        self.prefix = f"{sink.flow}-p{part:03d}-"
        self.seq, pending = resume if resume is not None else (0, {})
        self.pending: dict[str, list[tuple]] = {t: list(rows) for t, rows in pending.items()}
        self.pending_rows = sum(len(r) for r in self.pending.values())
        self.oldest = time.monotonic() if self.pending_rows else None
        self.written = 0
        self._remove_stale(self.seq)

    def _remove_stale(self, from_seq: int) -> None:
        fs, root = self.sink.fs, self.sink.root
        # Also matches the hidden temporary file of a local write that was cut short.
        name = re.compile(r"/(\.?)" + re.escape(self.prefix) + r"(\d+)\.parquet(\.tmp)?$")
        stale = []
        for table in self.sink.tables:
            base = f"{root}/{table}"
            if not self.sink.retry(partial(fs.exists, base), f"check {base}"):
                continue
            for path in self.sink.retry(partial(fs.find, base), f"list {base}"):
                m = name.search(path)
                if m and (m.group(1) or int(m.group(2)) >= from_seq):
                    stale.append(path)
        for path in stale:
            self.sink.retry(partial(fs.rm, path), f"remove {path}")
        if stale:
            log.info(
                "sink %s: removed %d files written after the last snapshot",
                self.prefix.rstrip("-"),
                len(stale),
            )

    def write_batch(self, values: list[SinkItem]) -> None:
        with self.sink.stop_on_failure():
            self._add(values)

    def _add(self, values: list[SinkItem]) -> None:
        for item in values:
            if item is None or not item.rows:
                continue
            self.pending.setdefault(item.table, []).extend(item.rows)
            self.pending_rows += len(item.rows)
            if self.oldest is None:
                self.oldest = time.monotonic()
        if self.pending_rows >= self.sink.flush_rows or (
            self.oldest is not None and time.monotonic() - self.oldest >= self.sink.flush_interval_s
        ):
            self.flush()

    def flush(self) -> None:
        if not self.pending_rows:
            return
        log.info(
            "sink %s: writing flush %d (%d rows)",
            self.prefix.rstrip("-"),
            self.seq,
            self.pending_rows,
        )
        files = 0
        started = time.monotonic()
        flow = self.sink.flow
        for table_name, rows in self.pending.items():
            if rows:
                written = self._write_table(self.sink.tables[table_name], rows)
                files += written
                ROWS_WRITTEN.labels(flow, table_name).inc(len(rows))
                FILES_WRITTEN.labels(flow, table_name).inc(written)
        FLUSH_SECONDS.labels(flow).observe(time.monotonic() - started)
        LAST_FLUSH.labels(flow).set(time.time())
        log.info(
            "sink %s: wrote %d rows in %d files (flush %d)",
            self.prefix.rstrip("-"),
            self.pending_rows,
            files,
            self.seq,
        )
        self.written += self.pending_rows
        self.seq += 1
        self.pending = {}
        self.pending_rows = 0
        self.oldest = None

    def _write_table(self, table: Table, rows: list[tuple]) -> int:
        df = pl.DataFrame(rows, schema=[c for c, _ in table.columns], orient="row")
        df = df.with_columns(
            [pl.col(c).cast(t) for c, t in table.columns if c not in table.timestamps]
            + [
                pl.col(c).cast(pl.Int64).cast(pl.Datetime("ms", "UTC")).dt.cast_time_unit("us")
                for c in table.timestamps
            ]
        )
        stamp = pl.col(table.partition_by).fill_null(datetime.now(UTC))
        df = df.with_columns(
            event_date=stamp.dt.strftime("%Y-%m-%d"), event_hour=stamp.dt.strftime("%H")
        )
        files = 0
        for (date, hour), part in df.partition_by(
            ["event_date", "event_hour"], as_dict=True, include_key=False
        ).items():
            directory = f"{self.sink.root}/{table.name}/event_date={date}/event_hour={hour}"
            path = f"{directory}/{self.prefix}{self.seq:010d}.parquet"
            self.sink.write_file(part, directory, path)
            files += 1
        return files

    def snapshot(self) -> SinkState:
        return self.seq, {t: list(rows) for t, rows in self.pending.items() if rows}

    def close(self) -> None:
        with self.sink.stop_on_failure():
            self.flush()
        log.info("sink %s: closed after %d rows", self.prefix.rstrip("-"), self.written)


class ParquetSink(FixedPartitionedSink[SinkItem, SinkState]):
    """Writes `TableRows` to hive-partitioned Parquet; keys route to `parts` partitions.

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
        flush_interval_s: float = 4.0,
        flush_rows: int = 500_000,
        fs_options: dict[str, Any] | None = None,
        slow_writes_s: float = 0.0,
        storage_retry_s: float = 300.0,
    ) -> None:
        self.url = root
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
        self.storage_retry_s = storage_retry_s
        self.retries = STORAGE_RETRIES.labels(flow)

    def retry(self, action: Callable[[], T], what: str) -> T:
        """`retry` with this sink's time budget, counting retries."""
        return retry(action, what, give_up_after_s=self.storage_retry_s, on_retry=self.retries.inc)

    def list_parts(self) -> list[str]:
        return [str(i) for i in range(self.parts)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: SinkState | None
    ) -> _ParquetPartition:
        with self.stop_on_failure():
            return _ParquetPartition(self, int(for_part), resume_state)

    @contextmanager
    def stop_on_failure(self) -> Iterator[None]:
        """A storage error that will not heal stops the process with one line."""
        try:
            yield
        except StorageFailure as ex:
            stop(f"CLICKSTREAM_OUTPUT {self.url}: {ex}")

    def write_file(self, df: pl.DataFrame, directory: str, path: str) -> None:
        fs = self.fs
        if self.local:

            def write_local() -> None:
                fs.makedirs(directory, exist_ok=True)
                hidden = f"{directory}/.{path.rsplit('/', 1)[1]}.tmp"
                df.write_parquet(hidden, compression="zstd")
                time.sleep(self.slow_writes_s)
                os.replace(hidden, path)  # atomic: readers see the whole file or none

            self.retry(write_local, f"write {path}")
            return

        def upload() -> None:
            with fs.open(path, "wb") as f:
                df.write_parquet(f, compression="zstd")
                time.sleep(self.slow_writes_s)

        self.retry(upload, f"upload {path}")
