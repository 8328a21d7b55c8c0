"""Compare our tables with the CSVs of `shared/tools/spark_reference.py` (a by-hand check).

    python -m tools.compare_spark OUTPUT SPARK_CSV_DIR

Prints, per table, the rows only we have and the rows only Spark has; exits 1 on
any difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from tools.show import read_table

KEYS = {
    "pages_per_min": ["userid"],
    "errors_per_min_alert": ["status"],
    "click_user_sessions": ["username"],
    "user_ip_activity": ["username", "ip", "city"],
}


def ours(output: Path, table: str) -> pl.DataFrame:
    """Our table (Parquet or Delta), times as epoch ms like the CSVs."""
    df = read_table(str(output), table)
    if df is None:
        raise SystemExit(f"error: {output}/{table}: no files")
    return df.drop("event_date", "event_hour").with_columns(
        pl.col("event_start").dt.epoch("ms"), pl.col("event_end").dt.epoch("ms")
    )


def main() -> int:
    output, spark_dir = Path(sys.argv[1]), Path(sys.argv[2])
    failed = False
    for table, keys in KEYS.items():
        csv = spark_dir / f"{table}.csv"
        if not csv.exists():
            continue
        spark = pl.read_csv(csv, infer_schema_length=0)
        mine = ours(output, table).select(pl.all().cast(pl.String))
        spark = spark.select(mine.columns).with_columns([pl.col(k).replace("", None) for k in keys])
        only_ours = mine.join(spark, on=mine.columns, how="anti", nulls_equal=True)
        only_spark = spark.join(mine, on=mine.columns, how="anti", nulls_equal=True)
        status = "equal" if only_ours.is_empty() and only_spark.is_empty() else "DIFFERENT"
        print(f"{table}: ours {mine.height} rows, spark {spark.height} rows: {status}")
        if status != "equal":
            failed = True
            print("  only ours:", only_ours.head(5))
            print("  only spark:", only_spark.head(5))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
