"""Print what each table under an output location holds.

python -m tools.show [OUTPUT]      (default: $CLICKSTREAM_OUTPUT or ./output)
"""

from __future__ import annotations

import sys

import polars as pl

from config import output_folder, registry_kafka, streams_folder, tables_folder
from sql import output_tables
from storage.location import is_local, output_fs, table_files  # also keeps gcsfs off its gRPC probe


def read_table(output: str, table: str, version: int | None = None) -> pl.DataFrame | None:
    """A table's rows (Parquet or Delta) with its hive columns as strings, from any fsspec
    location (a Delta table at its current version, or `version`); None without files."""
    fs, root = output_fs(output)
    files = table_files(fs, root, table, version)
    if not files:
        return None
    frames = []
    local = is_local(fs)
    for f in files:
        if local:
            df = pl.read_parquet(f)
        else:
            with fs.open(f, "rb") as fh:
                df = pl.read_parquet(fh)
        parts = dict(p.split("=", 1) for p in f.split("/") if "=" in p)
        frames.append(
            df.with_columns(
                event_date=pl.lit(parts.get("event_date")),
                event_hour=pl.lit(parts.get("event_hour")),
            )
        )
    return pl.concat(frames, how="vertical_relaxed")


def main() -> None:
    output = sys.argv[1] if len(sys.argv) > 1 else output_folder()
    pl.Config.set_tbl_rows(8)
    pl.Config.set_fmt_str_lengths(40)
    pl.Config.set_tbl_width_chars(150)
    pl.Config.set_tbl_hide_dataframe_shape(True)
    for table in (
        t.name for t in output_tables(tables_folder(), streams_folder(), registry_kafka())
    ):
        df = read_table(output, table)
        if df is None:
            print(f"\n{table}: no rows")
            continue
        print(f"\n{table}: {df.height} rows")
        df = df.drop("event_date", "event_hour", "key", "payload", strict=False)
        sort = [c for c in ("event_start", "event_time", "ts") if c in df.columns][:1]
        print(df.sort(sort, descending=True).head(8) if sort else df.head(8))


if __name__ == "__main__":
    main()
