"""Partitioned Parquet tables, written through fsspec (local paths, gs://, ...).

Layout: `<root>/<table>/event_date=YYYY-MM-DD/event_hour=HH/<flow>-p<part>-<seq>-t<token>.parquet`,
hive partitions from each table's time column (UTC), files built with Polars
(zstd), readable by Polars, DuckDB, Spark and BigQuery. The partition columns are
in the path only, as those readers expect.

Exactly once: each sink partition numbers its flushes (`seq`). Its snapshot is the
next `seq` plus the rows it has buffered. A partition built from a snapshot first
deletes its own files numbered `seq` or above: whatever an interrupted run wrote
after that snapshot. The replayed input then writes those rows again, so every
row is stored once. A partition built without a snapshot owns nothing yet and
deletes all its own files: a rerun replaces, never adds.

The token is the writer's fencing token (`ownership`; no `-t` part outside
`python -m bytewax.run`): a file always names the lease holder that wrote it.

Readers never see half a file: a local file is written under a hidden name and
renamed; a GCS object becomes visible only when its single upload completes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

from ownership import fence
from setting import ConfigError
from sinks.base import BufferedPartition, SinkItem, TableRows, TableSink, frame, hive_parts
from storage.location import is_delta_table

__all__ = ["ParquetSink", "SinkItem", "TableRows"]

log = logging.getLogger(__name__)


class SinkState(NamedTuple):
    """What a Parquet sink partition saves (as a plain tuple, see
    `operators.clock.ClockState`)."""

    seq: int  # the next flush number
    pending: dict[str, list[tuple]]  # rows buffered per table, not written yet
    # alerts of rows written, not accepted by Alertmanager yet (absent in older snapshots)
    alerts: Sequence[tuple] = ()


class _ParquetPartition(BufferedPartition[tuple]):
    def __init__(self, sink: ParquetSink, part: int, resume: tuple | None) -> None:
        seq, pending, alerts = SinkState(*resume) if resume is not None else SinkState(0, {})
        super().__init__(sink, part, seq, pending, alerts)
        self._remove_stale(seq)

    def _remove_stale(self, from_seq: int) -> None:
        fs, root = self.sink.fs, self.sink.root
        # Also matches the hidden temporary file of a local write that was cut short.
        name = re.compile(r"/(\.?)" + re.escape(self.name) + r"-(\d+)(?:-t\d+)?\.parquet(\.tmp)?$")
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
                "sink %s: removed %d files written after the last snapshot", self.name, len(stale)
            )

    def write_flush(self, pending: dict[str, list[tuple]]) -> dict[str, int]:
        files = {}
        for table_name, rows in pending.items():
            table = self.sink.tables[table_name]
            files[table_name] = 0
            for date, hour, part in hive_parts(frame(table, rows)):
                directory = f"{self.sink.root}/{table.name}/event_date={date}/event_hour={hour}"
                path = f"{directory}/{self.file_name()}"
                self.sink.write_file(part, directory, path)
                files[table_name] += 1
        return files

    def snapshot(self) -> tuple:
        fence()
        return tuple(
            SinkState(
                self.seq,
                {t: list(rows) for t, rows in self.pending.items() if rows},
                self.saved_alerts(),
            )
        )


class ParquetSink(TableSink[tuple]):
    """Writes `TableRows` to hive-partitioned Parquet files (see the module docstring)."""

    def _check(self) -> None:
        for table in self.tables:
            if is_delta_table(self.fs, f"{self.root}/{table}"):
                raise ConfigError(
                    f"CLICKSTREAM_OUTPUT {self.url}/{table} is a Delta table; set "
                    "CLICKSTREAM_TABLE_FORMAT=delta or write elsewhere"
                )

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple | None
    ) -> _ParquetPartition:
        with self.stop_on_failure():
            return _ParquetPartition(self, int(for_part), resume_state)
