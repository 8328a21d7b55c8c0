"""The named baseline of `just bench --only scale`: Spark Structured Streaming, `local[2]`,
running the notebook's two `clickstream` queries (pages_per_min, errors_per_min_alert) on
a Kafka topic, as the notebook did, to Parquet with checkpoints.

    .cache/spark/venv/bin/python benchmarks/spark_kafka.py BOOTSTRAP TOPIC OUT

Run with the Python of `.cache/spark/venv` (scripts/setup_spark.sh), never the product's.
Both queries read the whole topic once (`Trigger.AvailableNow`) and stop. Prints one JSON
line: the seconds from the first query's start to the last one's end (the JVM's start is
left out, in Spark's favour) and the rows each wrote.
"""

import json
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

JARS = Path(__file__).resolve().parents[1] / ".cache/spark/jars"
# Spark's Kafka source and what it needs; Spark itself is the wheel's.
KAFKA_JARS = (
    "spark-sql-kafka-0-10",
    "spark-token-provider-kafka-0-10",
    "kafka-clients",
    "commons-pool2",
)

CLICK = StructType(
    [
        StructField("ip", StringType()),
        StructField("userid", IntegerType()),
        StructField("remote_user", StringType()),
        StructField("time", StringType()),
        StructField("_time", IntegerType()),
        StructField("request", StringType()),
        StructField("status", StringType()),
        StructField("bytes", StringType()),
        StructField("referrer", StringType()),
        StructField("agent", StringType()),
    ]
)


def main() -> None:
    bootstrap, topic, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    jars = sorted(str(j) for j in JARS.glob("*.jar") if j.name.startswith(KAFKA_JARS))
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("clickstream-baseline")
        .config("spark.jars", ",".join(jars))
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def clicks():  # the notebook's view: value parsed, event time = the record's timestamp
        raw = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .load()
        )
        parsed = raw.select(
            F.from_json(F.col("value").cast("string"), CLICK).alias("v"), "timestamp"
        )
        return parsed.select("v.*", "timestamp").withWatermark("timestamp", "60 seconds")

    pages = (
        clicks()
        .where(F.col("request").like("%html%"))
        .groupBy(F.window("timestamp", "60 seconds", "5 seconds"), "userid")
        .agg(F.count("*").alias("pages"))
        .select("userid", "window.start", "window.end", "pages")
    )
    errors = (
        clicks()
        .where(F.col("status").cast("int") > 400)
        .groupBy(F.window("timestamp", "60 seconds", "20 seconds"), F.col("status").cast("int"))
        .agg(F.count("*").alias("errors"))
        .where(F.col("errors") > 5)
        .select("status", "window.start", "window.end", "errors")
    )
    start = time.perf_counter()
    queries = [
        frame.writeStream.format("parquet")
        .outputMode("append")
        .option("path", str(out / name))
        .option("checkpointLocation", str(out / f"{name}-checkpoint"))
        .trigger(availableNow=True)
        .start()
        for name, frame in (("pages_per_min", pages), ("errors_per_min_alert", errors))
    ]
    for q in queries:
        q.awaitTermination()
    seconds = time.perf_counter() - start
    rows = {
        name: spark.read.parquet(str(out / name)).count()
        for name in ("pages_per_min", "errors_per_min_alert")
    }
    print(json.dumps({"seconds": seconds, "rows": rows}))
    spark.stop()


if __name__ == "__main__":
    main()
