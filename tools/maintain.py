"""Maintain the Delta tables under an output location: compact, vacuum, checkpoint.

    python -m tools.maintain [OUTPUT] [--retention-hours 168] [--target-mb 128]
                               [--tables pages_per_min,...] [--skip-vacuum] [--every SECONDS]

Per table:
1. **compact** (OPTIMIZE): the small files of each partition are rewritten as files of
   about `--target-mb`; the commit marks them `dataChange=false`, so streaming
   readers and the sinks' own logic ignore it, and readers see the table before or
   after, never half. Appends that run at the same time do not conflict with it.
2. **vacuum**: files no longer referenced, and files no commit ever referenced (left by
   a killed writer or compaction), once older than `--retention-hours`. The retention
   must cover the longest time a dataflow may be down before it resumes: a resumed
   sink re-reads the files it committed after its last snapshot (see sinks/delta.py),
   and it must also cover the slowest reader. One hour is the minimum accepted.
3. **checkpoint** the log, and drop log entries past the table's log retention (30 days).

Safe while the dataflows write and safe to kill at any moment: every step either
commits atomically or deletes only files that no version younger than the
retention refers to. Prints one line per step with files and bytes before and after.
`--every S` runs a pass every S seconds until stopped (a sidecar next to the dataflows).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass

from deltalake import DeltaTable
from deltalake.transaction import CommitProperties

from config import output_folder, registry_kafka, streams_folder, tables_folder
from process import exit_on_config_error
from setting import ConfigError
from sql import output_tables
from storage.location import delta_storage_options, is_delta_table, output_fs
from storage.retries import cause

log = logging.getLogger(__name__)

MIN_RETENTION_HOURS = 1.0


@dataclass(frozen=True)
class Size:
    """What a reader of the table's current version reads."""

    files: int
    bytes: int

    def __str__(self) -> str:
        return f"{self.files} files, {self.bytes / 1e6:.1f} MB"


def size(table: DeltaTable) -> Size:
    actions = table.get_add_actions(flatten=True)
    sizes = [int(b) for b in actions.column("size_bytes").to_pylist()] if actions.num_rows else []
    return Size(len(sizes), int(sum(sizes)))


def delta_tables(output: str, names: list[str] | None = None) -> list[tuple[str, str]]:
    """(name, uri) of each Delta table under `output`; a `ConfigError` if there is none."""
    fs, root = output_fs(output)
    found = []
    for table in output_tables(tables_folder(), streams_folder(), registry_kafka()):
        if names and table.name not in names:
            continue
        if is_delta_table(fs, f"{root}/{table.name}"):
            found.append((table.name, f"{output.rstrip('/')}/{table.name}"))
    if not found:
        raise ConfigError(f"{output}: no Delta tables here (CLICKSTREAM_TABLE_FORMAT=delta output)")
    return found


def compact(table: DeltaTable, target_mb: int) -> dict:
    return table.optimize.compact(
        target_size=target_mb * 1024 * 1024,
        commit_properties=CommitProperties(max_commit_retries=100),
    )


def vacuum(table: DeltaTable, retention_hours: float) -> list[str]:
    return table.vacuum(
        retention_hours=int(retention_hours) if retention_hours >= 1 else 0,
        dry_run=False,
        enforce_retention_duration=False,
        full=True,  # also files no commit refers to (a killed writer's), after the retention
        commit_properties=CommitProperties(max_commit_retries=100),
    )


def checkpoint(table: DeltaTable) -> None:
    table.create_checkpoint()
    table.cleanup_metadata()


def maintain_table(
    name: str, uri: str, *, retention_hours: float, target_mb: int, skip_vacuum: bool = False
) -> None:
    table = DeltaTable(uri, storage_options=delta_storage_options(uri))
    before = size(table)
    started = time.monotonic()
    metrics = compact(table, target_mb)
    table.update_incremental()
    print(
        f"{name}: compacted {before} -> {size(table)} "
        f"({metrics.get('numFilesRemoved', 0)} files rewritten as "
        f"{metrics.get('numFilesAdded', 0)}, {time.monotonic() - started:.1f} s)",
        flush=True,
    )
    if not skip_vacuum:
        started = time.monotonic()
        removed = vacuum(table, retention_hours)
        print(
            f"{name}: vacuumed {len(removed)} files older than {retention_hours:g} h "
            f"({time.monotonic() - started:.1f} s)",
            flush=True,
        )
    started = time.monotonic()
    checkpoint(table)
    print(
        f"{name}: checkpoint at version {table.version()} ({time.monotonic() - started:.1f} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.maintain", description=__doc__)
    parser.add_argument(
        "output",
        nargs="?",
        default=output_folder(),
        help="the output location, a directory or gs://bucket/prefix "
        "(default: $CLICKSTREAM_OUTPUT or ./output)",
    )
    parser.add_argument("--retention-hours", type=float, default=168.0)
    parser.add_argument("--target-mb", type=int, default=128)
    parser.add_argument("--tables", help="comma-separated table names (default: all)")
    parser.add_argument("--skip-vacuum", action="store_true")
    parser.add_argument("--every", type=float, help="repeat every this many seconds")
    args = parser.parse_args(argv)
    with exit_on_config_error():
        if args.retention_hours < MIN_RETENTION_HOURS:
            raise ConfigError(
                f"--retention-hours: {args.retention_hours:g} is below {MIN_RETENTION_HOURS:g}; "
                "a resuming dataflow and running readers need the files of recent versions"
            )
        tables = delta_tables(args.output, args.tables.split(",") if args.tables else None)
    while True:
        for name, uri in tables:
            try:
                maintain_table(
                    name,
                    uri,
                    retention_hours=args.retention_hours,
                    target_mb=args.target_mb,
                    skip_vacuum=args.skip_vacuum,
                )
            except Exception as ex:  # one line; a sidecar tries again on its next pass
                print(f"error: {name}: {cause(ex)}", file=sys.stderr, flush=True)
                if args.every is None:
                    return 1
        if args.every is None:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
