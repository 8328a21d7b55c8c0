"""Delta Lake tables (`CLICKSTREAM_TABLE_FORMAT=delta`), with Polars building the data files.

Each table is a Delta table at `<root>/<table>`, partitioned by `event_date` (date)
and `event_hour` (int), with the same columns as the Parquet format. A flush of a
sink partition writes its Parquet files under the table (names from the flow, the
partition and the flush number, so a rewrite lands on the same name), then commits
them in one Delta transaction per table. The commit carries an application
transaction (`txn`): app id `clickstream/<flow>/p<partition>`, version the flush
number, as Spark's Delta sink and kafka-delta-ingest do.

Exactly once, and readers never see a duplicate or a row disappear: a resumed
partition (snapshot with flush number `seq`, or none: 0) reads from the log every
commit of its own app id numbered `seq` or later, i.e. what the interrupted run
committed after the snapshot, and holds those rows as *already committed*. The
replayed input produces them again (window rows are a function of the events, not
of timing), and each replayed row equal to an already committed one is dropped
instead of buffered, until none is left. Nothing committed is ever removed or
rewritten by the sink, so a reader polling the table during a crash and resume
sees every row once: before the crash, after it, and after the resume. The rows
still to be matched are part of the snapshot, so a crash during the resume is
handled the same way. New flushes are numbered after the last committed one.

Appends of several partitions and processes to one table do not conflict in
Delta (blind appends); a commit that loses the race for a log version is rebased
and retried by delta-rs, and a commit retried after a failure first checks the
log for its own `txn`, so a commit that did land is not made twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

import orjson
import polars as pl
from deltalake import DeltaTable, Field, Schema
from deltalake.schema import PrimitiveType
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction

from ownership import fence
from process import stop
from setting import ConfigError
from sinks.base import BufferedPartition, TableSink, frame, hive_parts, rows_of
from storage.location import delta_storage_options
from storage.retries import StorageFailure
from storage.tables import HIVE_COLUMNS, Table

log = logging.getLogger(__name__)


class SinkState(NamedTuple):
    """What a Delta sink partition saves (as a plain tuple, see
    `operators.clock.ClockState`)."""

    seq: int  # the next flush number
    pending: dict[str, list[tuple]]  # rows buffered per table, not written yet
    # rows committed after the snapshot a resume started from, not replayed yet:
    # (row, how many times) per table
    taken: dict[str, list[tuple[tuple, int]]]
    # alerts of rows written, not accepted by Alertmanager yet (absent in older snapshots)
    alerts: Sequence[tuple] = ()


_DELTA_TYPES: dict[Any, str] = {
    "Int64": "long",
    "Float64": "double",
    "String": "string",
    "Boolean": "boolean",
    "Binary": "binary",
    "Date": "date",
}


def delta_schema(table: Table) -> Schema:
    """The Delta schema of a table: its columns, then the two partition columns."""
    fields = [
        Field(name, PrimitiveType("timestamp" if name in table.timestamps else _DELTA_TYPES[kind]))
        for name, kind in table.columns
    ]
    fields += [
        Field("event_date", PrimitiveType("date")),
        Field("event_hour", PrimitiveType("integer")),
    ]
    return Schema(fields)


def _schema_text(schema: Schema) -> list[tuple[str, str]]:
    """(name, type) per column, types as Delta names them (`long`, `timestamp`...)."""
    return [(f.name, str(getattr(f.type, "type", f.type))) for f in schema.fields]


def _stats(df: pl.DataFrame, table: Table) -> str:
    """Delta file statistics: row count, nulls, and min/max of the number and time columns
    (strings are left out: Delta's truncation rules for them are not worth the risk)."""
    ranged = [c for c, kind in table.columns if kind == "Int64" or c in table.timestamps]
    nulls = df.null_count().row(0, named=True)
    low = df.select(ranged).min().row(0, named=True)
    high = df.select(ranged).max().row(0, named=True)

    def value(v: Any) -> Any:
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if hasattr(v, "strftime") else v

    return json.dumps(
        {
            "numRecords": df.height,
            "minValues": {c: value(v) for c, v in low.items() if v is not None},
            "maxValues": {c: value(v) for c, v in high.items() if v is not None},
            "nullCount": nulls,
        }
    )


class _DeltaPartition(BufferedPartition[tuple]):
    sink: DeltaSink

    def __init__(self, sink: DeltaSink, part: int, resume: tuple | None) -> None:
        seq, pending, taken, alerts = SinkState(*resume) if resume else SinkState(0, {}, {})
        self.sink = sink  # before the base's __init__: the take-back below needs it
        self.app_id = f"clickstream/{sink.flow}/p{part}"
        # The fencing `txn`: its version is the token of the lease holder that committed
        # last; a commit by an older holder (a zombie) is refused, see `commit`.
        self.owner_id = f"{self.app_id}/owner"
        self.committed: dict[str, Counter[tuple]] = {t: Counter(dict(r)) for t, r in taken.items()}
        # Each worker thread keeps its own table objects: they are not shared across threads.
        self.open: dict[str, DeltaTable] = {}
        # (date, hour) partitions written since the start, per table; not yet compacted
        self.hours: dict[str, set[tuple[str, int]]] = {}
        last = seq - 1
        token = fence()
        for table in sink.tables:
            if token:
                self.claim(table, token)
            version = self.table(table).transaction_version(self.app_id)
            if version is not None and version >= seq:
                rows = self._committed_since(table, seq)
                self.committed.setdefault(table, Counter()).update(rows)
                last = max(last, version)
                log.info(
                    "sink %s: %s: flushes %d..%d were committed after the last snapshot "
                    "(%d rows); replayed rows equal to them are not written again",
                    self.app_id,
                    table,
                    seq,
                    version,
                    len(rows),
                )
        self.committed = {t: c for t, c in self.committed.items() if c}
        super().__init__(sink, part, last + 1, pending, alerts)

    def _committed_since(self, table: str, seq: int) -> list[tuple]:
        """The rows of this app id's commits numbered `seq` or later, newest log first."""
        sink = self.sink
        base = f"{sink.root}/{table}"
        paths: list[str] = []
        version = self.table(table).version()
        while version >= 0:
            text = self._read(
                f"{base}/_delta_log/{version:020d}.json",
                f"{table}: cannot take back what flush {seq} and later committed",
            )
            actions = [orjson.loads(line) for line in text.splitlines() if line.strip()]
            ours = [
                a["txn"]["version"] for a in actions if a.get("txn", {}).get("appId") == self.app_id
            ]
            if ours and ours[0] < seq:
                break
            if ours:
                paths += [a["add"]["path"] for a in actions if "add" in a]
            version -= 1
        rows: list[tuple] = []
        for path in paths:
            data = self._read(
                f"{base}/{path}",
                f"{table}: a file committed after the last snapshot is gone (vacuumed with a "
                "retention shorter than the run's downtime?)",
            )
            rows += rows_of(pl.read_parquet(data), sink.tables[table])
        return rows

    def _read(self, path: str, failure: str) -> bytes:
        try:
            data: bytes = self.sink.retry(partial(self.sink.fs.cat_file, path), f"read {path}")
        except StorageFailure as ex:
            raise StorageFailure(f"{failure}: {ex}") from None
        return data

    def admit(self, table: str, rows: list[tuple]) -> list[tuple]:
        committed = self.committed.get(table)
        if not committed:
            return rows
        fresh = []
        again = []  # committed before the crash: durable, so alerted (again, maybe)
        for row in rows:
            if committed[row] > 0:
                committed[row] -= 1
                if not committed[row]:
                    del committed[row]
                again.append(row)
            else:
                fresh.append(row)
        self.durable({table: again})
        if not committed:
            del self.committed[table]
            log.info(
                "sink %s: %s: every row committed before the resume was replayed",
                self.app_id,
                table,
            )
        return fresh

    def write_flush(self, pending: dict[str, list[tuple]]) -> dict[str, int]:
        sink = self.sink
        staged: dict[str, list[AddAction | RemoveAction]] = {}
        for table_name, rows in pending.items():
            table = sink.tables[table_name]
            actions = staged[table_name] = []
            for date, hour, part in hive_parts(frame(table, rows)):
                if sink.compact_closed_hours:
                    self.hours.setdefault(table_name, set()).add((date, int(hour)))
                hive = f"event_date={date}/event_hour={hour}"
                relative = f"{hive}/{self.file_name()}"
                directory = f"{sink.root}/{table_name}/{hive}"
                size = sink.write_file(part, directory, f"{sink.root}/{table_name}/{relative}")
                actions.append(
                    AddAction(
                        relative,
                        size,
                        {"event_date": date, "event_hour": str(int(hour))},
                        int(time.time() * 1000),
                        True,
                        _stats(part, table),
                    )
                )
        log.info("sink %s: committing flush %d", self.name, self.seq)
        for table_name, actions in staged.items():
            self.commit(table_name, actions)
        if sink.compact_closed_hours:
            for table_name in staged:
                self._compact_closed(table_name, self.hours[table_name])
        return {t: len(a) for t, a in staged.items()}

    def _compact_closed(self, table: str, hours: set[tuple[str, int]]) -> None:
        """Compact the hours this partition wrote that lie two hours or more before the
        newest one it wrote: their windows are closed, so few files will follow there.
        (A late file after that is merged by the next `tools.maintain`.)"""

        def stamp(hour: tuple[str, int]) -> datetime:
            return datetime.fromisoformat(hour[0]).replace(hour=hour[1])

        newest = max(map(stamp, hours))
        for closed in sorted(h for h in hours if newest - stamp(h) >= timedelta(hours=2)):
            date, hour = closed
            started = time.monotonic()
            result = self.sink.retry(
                partial(
                    self.table(table).optimize.compact,
                    partition_filters=[("event_date", "=", date), ("event_hour", "=", str(hour))],
                    commit_properties=CommitProperties(max_commit_retries=100),
                ),
                f"compact {self.sink.uri(table)} {date} {hour:02d}h",
            )
            hours.discard(closed)
            log.info(
                "sink %s: %s: compacted %s %02dh: %d files into %d (%.1f s)",
                self.name,
                table,
                date,
                hour,
                result.get("numFilesRemoved", 0),
                result.get("numFilesAdded", 0),
                time.monotonic() - started,
            )

    def table(self, name: str) -> DeltaTable:
        """The table, brought up to the newest version of its log."""
        found = self.open.get(name)
        if found is None:
            found = self.open[name] = self.sink.open(name)
        else:
            self.sink.retry(found.update_incremental, f"read the log of {self.sink.uri(name)}")
        return found

    def claim(self, name: str, token: int) -> None:
        """Commit this holder's token to the table before reading what was committed
        after the snapshot: from then on, an older holder's commit is refused."""
        self.commit(name, [], flush=False)

    def _fenced(self, name: str, table: DeltaTable) -> list[Transaction]:
        """The fencing `txn` of a commit, once sure no newer lease holder committed."""
        token = fence()
        if not token:
            return []
        newest = table.transaction_version(self.owner_id) or 0
        if newest > token:
            stop(
                f"dataflow {self.sink.flow}: {self.sink.uri(name)} was committed to by a newer "
                f"lease holder (token {newest}, this process has {token}); this process stops "
                "without writing anything more"
            )
        return [Transaction(self.owner_id, token)]

    def commit(
        self, name: str, actions: list[AddAction | RemoveAction], *, flush: bool = True
    ) -> None:
        """Commit `actions` as this flush of this app id (or, `flush=False`, only the
        fencing `txn`), once, even when retried. Two holders racing on one partition
        both name its owner `txn`, so delta-rs fails one of them (a conflict); its
        retry finds the newer token and stops."""
        attempts = 0
        seq = self.seq if flush else None

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            table = self.table(name)
            fenced = self._fenced(name, table)
            if seq is None:
                if not fenced:
                    return
                if attempts > 1 and table.transaction_version(self.owner_id) == fenced[0].version:
                    return  # the failed attempt did land (it timed out on the way back)
            elif attempts > 1 and (table.transaction_version(self.app_id) or -1) >= seq:
                return  # the failed attempt did land
            flushed = [] if seq is None else [Transaction(self.app_id, seq)]
            table.create_write_transaction(
                actions,
                "append",
                self.sink.schemas[name],
                partition_by=list(HIVE_COLUMNS),
                commit_properties=CommitProperties(
                    app_transactions=flushed + fenced, max_commit_retries=100
                ),
            )

        what = f"flush {seq}" if flush else "the lease token"
        self.sink.retry(attempt, f"commit {what} of {self.app_id} to {self.sink.uri(name)}")

    def snapshot(self) -> tuple:
        fence()
        return tuple(
            SinkState(
                self.seq,
                {t: list(rows) for t, rows in self.pending.items() if rows},
                {t: list(c.items()) for t, c in self.committed.items()},
                self.saved_alerts(),
            )
        )


class DeltaSink(TableSink[tuple]):
    """Writes `TableRows` to Delta tables, one commit per table and flush (see the module)."""

    def __init__(
        self,
        root: str,
        flow: str,
        tables: Sequence[Table],
        *,
        compact_closed_hours: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, flow, tables, **kwargs)
        # Compact an hour partition once this partition writes two hours past it.
        self.compact_closed_hours = compact_closed_hours
        self.delta_options = delta_storage_options(root)
        self.schemas = {t.name: delta_schema(t) for t in tables}

    def uri(self, table: str) -> str:
        return f"{self.url}/{table}"

    def _check(self) -> None:
        """A location that holds something else than our Delta table is a `ConfigError`."""
        for name, schema in self.schemas.items():
            uri = self.uri(name)
            if DeltaTable.is_deltatable(uri, storage_options=self.delta_options):
                found = DeltaTable(uri, storage_options=self.delta_options)
                if _schema_text(found.schema()) != _schema_text(schema):
                    theirs = ", ".join(f"{n} {t}" for n, t in _schema_text(found.schema()))
                    raise ConfigError(
                        f"CLICKSTREAM_OUTPUT {uri} is a Delta table with other columns "
                        f"({theirs[:300]}); write to another location"
                    )
                if list(found.metadata().partition_columns) != list(HIVE_COLUMNS):
                    raise ConfigError(
                        f"CLICKSTREAM_OUTPUT {uri} is a Delta table partitioned by "
                        f"{found.metadata().partition_columns}, not {list(HIVE_COLUMNS)}"
                    )
            elif self._holds_other_files(name):
                raise ConfigError(
                    f"CLICKSTREAM_OUTPUT {uri} holds files but is not a Delta table "
                    "(Parquet output? set CLICKSTREAM_TABLE_FORMAT=parquet or write elsewhere)"
                )

    def _prepare(self) -> None:
        """`check`, then create the tables that are missing."""
        self._check()
        for name in self.schemas:
            uri = self.uri(name)
            if DeltaTable.is_deltatable(uri, storage_options=self.delta_options):
                continue
            try:
                DeltaTable.create(
                    uri,
                    self.schemas[name],
                    partition_by=list(HIVE_COLUMNS),
                    mode="ignore",
                    name=name,
                    storage_options=self.delta_options,
                )
            except Exception:
                # Another process of the cluster created it at the same moment and won
                # version 0 (put-if-absent); anything else is raised again.
                if not DeltaTable.is_deltatable(uri, storage_options=self.delta_options):
                    raise

    def _holds_other_files(self, name: str) -> bool:
        """Whether the table's directory holds anything but a log being created (another
        process of the cluster may be creating the table right now)."""
        base = f"{self.root}/{name}"
        if not self.fs.exists(base):
            return False
        return any(p.rstrip("/").rsplit("/", 1)[-1] != "_delta_log" for p in self.fs.ls(base))

    def open(self, name: str) -> DeltaTable:
        return self.retry(
            lambda: DeltaTable(self.uri(name), storage_options=self.delta_options),
            f"open {self.uri(name)}",
        )

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple | None
    ) -> _DeltaPartition:
        with self.stop_on_failure():
            return _DeltaPartition(self, int(for_part), resume_state)
