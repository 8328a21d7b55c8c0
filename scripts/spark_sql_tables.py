"""Spark's answer for a folder of table `.sql` files, on a replay dump (run with the Python of
`.cache/spark/venv`, see scripts/setup_spark.sh; used by tests/sql/test_spark_sql.py).

    python scripts/spark_sql_tables.py TABLES DUMP OUT [STREAMS.json]

For each table, the same SQL runs twice on the stream's records, as typed columns with
`timestamp` the record's time:
- as a streaming query over the dump's files, with the file's WATERMARK clause turned into
  `withWatermark` (open-source Spark does not read Databricks' clause): Spark must accept
  the SQL as a streaming aggregation in append mode;
- as a batch query, whose rows are written to OUT/<table>.jsonl (timestamps as epoch ms).
  Batch equals streaming append when no record is later than the delay, and unlike a
  stream it also gives the windows still open at the end of the input.

STREAMS.json describes declared streams (what `sql.streams` read from their CREATE STREAM
files): `{name: {"columns": {column: type}, "event_time": null or {"column", "format"}}}`.
Each is read as Spark's `from_json` reads text, then cast to its declared type; the event
time is the record's timestamp, or the payload column turned into a timestamp by Spark's
`timestamp_millis`, `timestamp_seconds` or `CAST(... AS TIMESTAMP)`.

`count(DISTINCT x)` becomes `size(collect_set(x))`: Spark streams refuse the former; the
latter is exact and skips nulls too.
"""

import json
import re
import sys
from datetime import UTC
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.functions import col, expr, from_json

WATERMARK = re.compile(
    r"\bWATERMARK\s+`?(\w+)`?\s+DELAY\s+OF\s+INTERVAL\s+'?(\d+)'?\s+(SECONDS?|MINUTES?)\b", re.I
)
DISTINCT = re.compile(r"count\s*\(\s*DISTINCT\s+([^)]+)\)", re.I)
FROM = re.compile(r"\bFROM\s+(\w+)", re.I)

# The events as `events.schema` types them (numbers may come as strings: cast).
SCHEMAS = {
    "clickstream": (
        "clickstream.jsonl",
        {
            "ip": "string",
            "userid": "bigint",
            "request": "string",
            "status": "int",
            "bytes": "bigint",
            "remote_user": "string",
            "time": "string",
            "referrer": "string",
            "agent": "string",
        },
    ),
    "user_clickstream": (
        "user_clickstream.jsonl",
        {
            "USERNAME": "string",
            "REGISTERED_AT": "bigint",
            "IP": "string",
            "CITY": "string",
            "REQUEST": "string",
            "STATUS": "int",
            "BYTES": "bigint",
        },
    ),
}
ENVELOPE = "topic string, partition int, offset bigint, ts bigint, key string, payload string"


# a declared stream's column types, as Spark names them
SPARK_TYPES = {
    "string": "string",
    "int": "int",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
}
EVENT_TIME = {
    "epoch_millis": "timestamp_millis(CAST(v.`{c}` AS BIGINT))",
    "epoch_seconds": "timestamp_seconds(CAST(v.`{c}` AS DOUBLE))",
    "iso8601": "CAST(v.`{c}` AS TIMESTAMP)",
}


def declared(streams_json):
    """The streams of a STREAMS.json, as SCHEMAS has them, and their event time columns."""
    schemas, times = {}, {}
    for name, stream in json.loads(Path(streams_json).read_text()).items():
        columns = {c: SPARK_TYPES[t] for c, t in stream["columns"].items()}
        schemas[name] = (f"{name}.jsonl", columns)
        times[name] = stream["event_time"]
    return schemas, times


def typed(frame, stream, times=None):
    _, fields = SCHEMAS[stream]
    as_text = ", ".join(f"`{name}` string" for name in fields)
    parsed = frame.select(
        from_json("payload", as_text).alias("v"), "ts", "key", "topic", "partition", "offset"
    )
    event_time = (times or {}).get(stream)
    if event_time is None:
        stamp = expr("timestamp_millis(ts)")
    else:
        stamp = expr(EVENT_TIME[event_time["format"]].format(c=event_time["column"]))
    return parsed.select(
        *[col(f"v.`{name}`").cast(kind).alias(name) for name, kind in fields.items()],
        stamp.alias("timestamp"),
        # Kafka's columns, as the Kafka source gives them (the key cast to a string)
        "key",
        "topic",
        "partition",
        "offset",
    ).where("timestamp IS NOT NULL")  # no event time: a dead letter to us, no window to Spark


def cell(value):
    if hasattr(value, "timestamp"):
        return round(value.replace(tzinfo=UTC).timestamp() * 1000)
    if hasattr(value, "isoformat"):  # a date
        return value.isoformat()
    return value


def main(tables, dump, out, times=None):
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        # docs/sql.md: nulls, types and casts are those of Spark without ANSI mode
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(tables.glob("*.sql")):
        text = path.read_text()
        watermark = WATERMARK.search(text)
        assert watermark is not None, f"{path}: no WATERMARK"
        delay = int(watermark.group(2)) * (60 if watermark.group(3).lower().startswith("m") else 1)
        query = DISTINCT.sub(r"size(collect_set(\1))", WATERMARK.sub("", text))
        source = FROM.search(query)
        assert source is not None, f"{path}: no FROM"
        stream = source.group(1).lower()
        file_name, _ = SCHEMAS[stream]
        folder = out / "input" / stream
        if not folder.exists():
            folder.mkdir(parents=True)
            (folder / file_name).write_bytes((dump / file_name).read_bytes())
        # streaming: Spark accepts this SQL as an append-mode streaming aggregation
        events = typed(spark.readStream.schema(ENVELOPE).json(str(folder)), stream, times)
        events.withWatermark("timestamp", f"{delay} seconds").createOrReplaceTempView(stream)
        started = (
            spark.sql(query)
            .writeStream.outputMode("append")
            .format("memory")
            .queryName(f"q_{path.stem}")
            .trigger(availableNow=True)
            .start()
        )
        started.awaitTermination()
        # batch: every window, for the comparison
        batch = typed(spark.read.schema(ENVELOPE).json(str(folder)), stream, times)
        batch.createOrReplaceTempView(stream)
        rows = spark.sql(query).collect()
        with open(out / f"{path.stem}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps([cell(v) for v in row]) + "\n")
        print(f"{path.stem}: {len(rows)} rows", flush=True)
    spark.stop()


if __name__ == "__main__":
    found_times = None
    if len(sys.argv) > 4:
        found, found_times = declared(sys.argv[4])
        SCHEMAS.update(found)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), found_times)
