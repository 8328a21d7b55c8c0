"""Spark 4 with delta-spark 4.0 reads our Delta tables, with the rows the Parquet format
gives for the same input (run by `tests/sinks/test_delta_spark.py`, in the venv
`scripts/setup_spark.sh` makes).

    python scripts/spark_delta_check.py DELTA_OUTPUT PARQUET_OUTPUT

Both outputs are read by Spark itself: `spark.read.format("delta").load(...)` and
`spark.read.parquet(...)` (hive partitions discovered). Per table, the two must hold
the same rows (`exceptAll` both ways, duplicates included) and the same columns and
types. Exit 1 on any difference.
"""

import glob
import os
import sys

from pyspark.sql import SparkSession

TABLES = [
    "pages_per_min",
    "errors_per_min_alert",
    "click_user_sessions",
    "user_ip_activity",
    "late_events",
    "dead_letters",
]


def main() -> int:
    delta, parquet = sys.argv[1], sys.argv[2]
    jars = ",".join(sorted(glob.glob(os.path.join(os.environ["DELTA_JARS"], "delta-*.jar"))))
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    failed = False
    for table in TABLES:
        if not os.path.isdir(os.path.join(parquet, table)):
            print(f"{table}: no Parquet reference, skipped")
            continue
        ours = spark.read.format("delta").load(os.path.join(delta, table))
        ref = spark.read.parquet(os.path.join(parquet, table))
        ref = ref.select(*ours.columns)  # same column order; types compared below
        types_delta = {f.name: f.dataType.simpleString() for f in ours.schema.fields}
        types_ref = {f.name: f.dataType.simpleString() for f in ref.schema.fields}
        # Spark infers a hive partition's type from the path; the Delta log declares it.
        types_ref["event_hour"] = types_delta.get("event_hour", types_ref["event_hour"])
        extra = ours.exceptAll(ref).count()
        missing = ref.exceptAll(ours).count()
        n = ours.count()
        same = extra == 0 and missing == 0 and types_delta == types_ref
        failed |= not same
        types = "equal" if types_delta == types_ref else f"differ: {types_delta} vs {types_ref}"
        print(
            f"{table}: Delta {n} rows, Parquet {ref.count()} rows, "
            f"{extra} only in Delta, {missing} only in Parquet, types {types}"
        )
    spark.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
