"""What `tools.maintain` does to Delta tables written live (`just bench-compaction`).

    python -m benchmarks.compaction --minutes 30          # live run, then measure
    python -m benchmarks.compaction --measure OUTPUT      # an existing Delta output

The live run is both dataflows on datagen in real time (CLICKSTREAM_DATAGEN_RATE,
default 200 records/s each, the seed's 4 s flushes) into Delta tables on local disk.
Then, per table: files and bytes a reader reads, bytes on disk, and the time of a
full-table read with Polars (best of 5), before and after maintenance (compact,
vacuum with retention 0 since nothing writes any more, checkpoint). Z-order by the
group key is measured on a copy: a one-key filtered read after compaction alone,
against after compaction plus Z-order.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from benchmarks.common import start_dataflows
from tools.maintain import Size, checkpoint, compact, size, vacuum

GROUP_KEY = {
    "pages_per_min": "userid",
    "errors_per_min_alert": "status",
    "click_user_sessions": "username",
    "user_ip_activity": "username",
    "late_events": "group_key",
    "dead_letters": "reason",
}


def _best(action: Callable[[], object], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def _on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.parquet") if "_delta_log" not in f.parts)


def live_run(output: Path, minutes: float) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM")}
    env = {
        **clean,
        "CLICKSTREAM_SOURCE": "datagen",
        "CLICKSTREAM_DATAGEN_RATE": os.environ.get("CLICKSTREAM_DATAGEN_RATE", "200"),
        "CLICKSTREAM_OUTPUT": str(output),
        "CLICKSTREAM_TABLE_FORMAT": "delta",
    }
    print(f"live: both dataflows on datagen for {minutes:g} min into {output}", flush=True)
    procs = start_dataflows(env)
    try:
        time.sleep(minutes * 60)
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def measure(output: Path) -> list[str]:
    lines = [
        "| table | rows | files before | KB before | read before | files after | "
        "KB after | read after | on disk before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    zorder = []
    for table_dir in sorted(p for p in output.iterdir() if (p / "_delta_log").is_dir()):
        uri = str(table_dir)
        table = DeltaTable(uri)
        before: Size = size(table)
        if not before.files:
            continue
        disk_before = _on_disk(table_dir)
        read_before = _best(partial(pl.read_delta, uri))
        rows = pl.read_delta(uri).height
        compact(table, 128)
        table.update_incremental()
        key = GROUP_KEY[table_dir.name]
        # Z-order is measured on a copy, against compaction alone
        copy = Path(tempfile.mkdtemp()) / table_dir.name
        shutil.copytree(table_dir, copy)
        probe = pl.read_delta(uri)[key].drop_nulls()
        value = probe[len(probe) // 2] if len(probe) else None

        def one_key(u: str, k: str = key, v: object = value) -> object:
            return pl.scan_delta(u).filter(pl.col(k) == v).collect()

        filtered = _best(partial(one_key, uri))
        DeltaTable(str(copy)).optimize.z_order([key])
        filtered_z = _best(partial(one_key, str(copy)))
        shutil.rmtree(copy.parent)
        vacuum(table, 0)
        checkpoint(table)
        after = size(table)
        read_after = _best(partial(pl.read_delta, uri))
        lines.append(
            f"| {table_dir.name} | {rows:,} | {before.files:,} | {before.bytes / 1e3:,.0f} | "
            f"{read_before * 1000:.0f} ms | {after.files:,} | {after.bytes / 1e3:,.0f} | "
            f"{read_after * 1000:.0f} ms | {disk_before / 1e3:,.0f} → "
            f"{_on_disk(table_dir) / 1e3:,.0f} KB |"
        )
        zorder.append(
            f"| {table_dir.name} | {key} | {filtered * 1000:.1f} ms | {filtered_z * 1000:.1f} ms "
            f"| {filtered / filtered_z:.2f}x |"
        )
    return [
        *lines,
        "",
        "| table | Z-order by | one-key read, compacted | compacted + Z-order | speed-up |",
        "|---|---|---:|---:|---:|",
        *zorder,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compaction")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--measure", type=Path, help="measure an existing Delta output")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        output = args.measure
        if output is None:
            output = Path(tmp, "live")
            live_run(output, args.minutes)
        text = "\n".join(measure(output))
    print(text)
    Path("bench-results").mkdir(exist_ok=True)
    Path("bench-results/compaction.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
