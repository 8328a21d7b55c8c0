"""A topic the repo does not know, run with no Python: a stream declaration, table SQL, and
`python -m bytewax.run dataflows.tables:flow`, against the real broker. The tables equal
what Spark computes from the same SQL on the same records (`from_json`, the payload's
time column as the event time, Kafka's columns in WHERE and aggregates), from Kafka and
from a replay of the same records."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from kafka_client.settings import KafkaSettings
from sql import load_streams, load_tables
from tests.processes import run_flow
from tests.tables import assert_same_rows, read_rows, spark_rows
from tools.produce import create_topics, produce_dump
from tools.replay_gen import kcat_line

ORDERS = """-- orders, timed by the moment they were placed (an ISO-8601 string)
CREATE STREAM orders (
    order_id BIGINT,
    country STRING,
    amount DOUBLE,
    paid BOOLEAN,
    placed_at TIMESTAMP
) WITH (KAFKA_TOPIC = '{topic}', VALUE_FORMAT = 'JSON', TIMESTAMP = 'placed_at');
"""
VISITS = """CREATE STREAM visits (page STRING, seconds BIGINT, seen_at DOUBLE)
WITH (KAFKA_TOPIC = '{topic}', TIMESTAMP = 'seen_at', TIMESTAMP_FORMAT = 'epoch_seconds');
"""
TABLES = {
    "revenue_per_country": """
        SELECT country, window.start AS event_start, window.end AS event_end,
               count(*) AS orders, sum(amount) AS revenue, max(amount) AS biggest
        FROM orders WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS
        WHERE paid
        GROUP BY window(timestamp, '1 minute'), country""",
    "big_orders": """
        SELECT country, window.start AS event_start, count_if(amount > 100) AS big,
               count(amount) AS priced, max_by(amount, order_id) AS last_amount,
               min_by(paid, order_id) AS first_paid
        FROM orders WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS
        GROUP BY window(timestamp, '60 seconds', '20 seconds'), country""",
    "orders_per_partition": """
        SELECT partition, window.start AS event_start, count(*) AS orders,
               max(offset) AS last_offset, min(timestamp) AS first_placed,
               max(timestamp) AS last_placed, count(DISTINCT key) AS keys
        FROM orders WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS
        WHERE timestamp >= '2026-11-30 08:01:00' AND topic LIKE '%-orders'
              AND offset % 2 = 0
        GROUP BY window(timestamp, '30 seconds'), partition""",
    "time_per_page": """
        SELECT page, session_window.start AS event_start, session_window.end AS event_end,
               sum(seconds) AS seconds, count(*) AS visits
        FROM visits WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS
        GROUP BY session_window(timestamp, '20 seconds'), page""",
}
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
# every record's Kafka timestamp: years before its payload's time, so a run that used it
# would put every record in one window
KAFKA_TS = 1_500_000_000_000


def _orders(n: int, rng: random.Random) -> tuple[list[bytes], int]:
    """Orders at about 20 a second, out of order by up to 10 s (within the 30 s delay),
    with pauses that close sessions and windows; and the records that have no event time."""
    values, no_time = [], 0
    at = START
    for i in range(n):
        at += timedelta(milliseconds=rng.randrange(0, 100) + (40_000 if i % 700 == 699 else 0))
        placed = at - timedelta(milliseconds=rng.randrange(0, 10_000))
        order: dict = {
            "order_id": i,
            "country": rng.choice(["DE", "FR", "NL", "US"]),
            "amount": round(rng.uniform(1, 200), 2),
            "paid": rng.random() < 0.8,
            "placed_at": placed.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if i % 97 == 5:
            order["amount"] = "n/a"  # does not cast: null, as in Spark
        if i % 89 == 7:
            del order["country"]  # missing: a group of its own
        if i % 101 == 9:
            del order["placed_at"]  # no event time: a dead letter
            no_time += 1
        if i % 113 == 11:  # the same instant written in another zone
            order["placed_at"] = placed.astimezone(PLUS_TWO).isoformat(timespec="milliseconds")
        values.append(orjson.dumps(order))
    return values, no_time


def _visits(n: int, rng: random.Random) -> list[bytes]:
    values = []
    at = START.timestamp()
    for i in range(n):
        at += rng.uniform(0, 0.2) + (30 if i % 400 == 399 else 0)
        # quarter seconds: exact in binary, so Spark's microseconds are whole milliseconds
        seen = round((at - rng.uniform(0, 8)) * 4) / 4
        page = rng.choice(["/", "/cart", "/checkout"])
        values.append(
            orjson.dumps({"page": page, "seconds": str(rng.randrange(1, 60)), "seen_at": seen})
        )
    return values


def _dump(path: Path, topic: str, values: list[bytes], partitions: int) -> None:
    lines = [
        kcat_line(topic, i % partitions, i // partitions, KAFKA_TS + i, str(i), v)
        for i, v in enumerate(values)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("table_format", ["parquet"])
def test_a_topic_the_repo_does_not_know_runs_from_sql_files_and_equals_spark(
    kafka_bootstrap, topic_name, spark_python, tmp_path, table_format
):
    rng = random.Random(36)
    streams, tables, dump = tmp_path / "streams", tmp_path / "tables", tmp_path / "dump"
    for folder in (streams, tables, dump):
        folder.mkdir()
    topics = {"orders": f"{topic_name}-orders", "visits": f"{topic_name}-visits"}
    (streams / "orders.sql").write_text(ORDERS.format(topic=topics["orders"]))
    (streams / "visits.sql").write_text(VISITS.format(topic=topics["visits"]))
    for name, sql in TABLES.items():
        (tables / f"{name}.sql").write_text(sql)
    orders, no_time = _orders(4_000, rng)
    _dump(dump / "orders.jsonl", topics["orders"], orders, 3)
    _dump(dump / "visits.jsonl", topics["visits"], _visits(2_500, rng), 2)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, value_format="json")
    for stream, partitions in (("orders", 3), ("visits", 2)):
        create_topics(kafka, {topics[stream]: {}}, partitions)
        produce_dump(kafka, dump / f"{stream}.jsonl", topics[stream])

    common = {
        "CLICKSTREAM_STREAMS": str(streams),
        "CLICKSTREAM_TABLES": str(tables),
        "CLICKSTREAM_TABLE_FORMAT": table_format,
    }
    for stream in ("orders", "visits"):
        for source in ("kafka", "replay"):
            env = {
                **common,
                "CLICKSTREAM_STREAM": stream,
                "CLICKSTREAM_OUTPUT": str(tmp_path / source),
            }
            if source == "kafka":
                env |= {
                    "CLICKSTREAM_SOURCE": "kafka",
                    "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                    "KAFKA_STOP_AT_END": "true",
                }
            else:
                env["CLICKSTREAM_SOURCE"] = f"replay:{dump}"
            done = run_flow(env, "tables", timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]

    # Spark: the same SQL on the same records, each stream as its declaration says
    declared = {
        name: {
            "columns": {c.name: c.type for c in s.columns},
            "event_time": None
            if s.event_time is None
            else {"column": s.event_time.column, "format": s.event_time.format},
        }
        for name, s in load_streams(streams).items()
    }
    (tmp_path / "streams.json").write_text(json.dumps(declared))
    spark = spark_rows(spark_python, tables, dump, tmp_path / "spark", tmp_path / "streams.json")
    for table in load_tables(tables, streams=load_streams(streams)):
        theirs = spark[table.name]
        assert len(theirs) > 20, f"{table.name}: too few rows to tell"
        for source in ("kafka", "replay"):
            ours = read_rows(tmp_path / source, table.name)
            assert_same_rows(ours, theirs, (table.name, source))
    # every record is in a table's count or a dead letter: the ones without a time
    for source in ("kafka", "replay"):
        dead = read_rows(tmp_path / source, "dead_letters")
        assert len(dead) == no_time, source
        assert all(row[-1].startswith("no event time: placed_at is null") for row in dead)


PAGEVIEWS_SCHEMA = {
    "type": "record",
    "name": "pageview",
    "fields": [
        {"name": "userid", "type": "string"},
        {"name": "pageid", "type": "string"},
        {"name": "duration", "type": ["null", "int"], "default": None},
        {"name": "premium", "type": "boolean"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},  # not a column
    ],
}
PAGEVIEWS = "CREATE STREAM pageviews WITH (KAFKA_TOPIC = '{topic}', VALUE_FORMAT = 'AVRO');\n"
PAGEVIEW_TABLE = """
    SELECT pageid, window.start AS event_start, count(*) AS views, sum(duration) AS seconds,
           count_if(premium) AS premium_views, count(DISTINCT userid) AS users
    FROM pageviews WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS
    GROUP BY window(timestamp, '1 minute', '30 seconds'), pageid"""


def test_an_avro_topic_takes_its_columns_from_the_registry_and_equals_spark(
    kafka_bootstrap, registry, topic_name, spark_python, tmp_path
):
    import fastavro

    from kafka_client.schema_registry import register_value_schema
    from kafka_client.settings import RegistrySettings
    from sources.schemas import with_registry_columns
    from tools.produce import producer

    rng = random.Random(7)
    streams, tables, dump = tmp_path / "streams", tmp_path / "tables", tmp_path / "dump"
    for folder in (streams, tables, dump):
        folder.mkdir()
    (streams / "pageviews.sql").write_text(PAGEVIEWS.format(topic=topic_name))
    (tables / "views_per_page.sql").write_text(PAGEVIEW_TABLE)
    registry_settings = RegistrySettings(registry.url)
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, registry=registry_settings, value_format="avro"
    )
    schema_id = register_value_schema(
        registry_settings, topic_name, "AVRO", json.dumps(PAGEVIEWS_SCHEMA)
    )
    create_topics(kafka, {topic_name: {}}, 2)
    parsed = fastavro.parse_schema(PAGEVIEWS_SCHEMA)
    p = producer(kafka)
    lines = []
    offsets = [0, 0]
    at = int(START.timestamp() * 1000)
    for i in range(3_000):
        at += rng.randrange(0, 150) + (45_000 if i % 900 == 899 else 0)
        ts = at - rng.randrange(0, 10_000)
        view: dict[str, Any] = {
            "userid": f"u{rng.randrange(40)}",
            "pageid": rng.choice(["home", "cart", "pay"]),
            "duration": None if i % 13 == 0 else rng.randrange(1, 300),
            "premium": rng.random() < 0.3,
            "tags": ["a"],
        }
        value = io.BytesIO(b"\x00" + schema_id.to_bytes(4, "big"))
        value.seek(5)
        fastavro.schemaless_writer(value, parsed, view)
        partition = i % 2
        p.produce(
            topic_name, value.getvalue(), key=view["userid"], partition=partition, timestamp=ts
        )
        # Spark reads the same records as JSON: from_json of a record is from_avro's
        lines.append(
            kcat_line(
                topic_name, partition, offsets[partition], ts, view["userid"], orjson.dumps(view)
            )
        )
        offsets[partition] += 1
    assert p.flush(60) == 0
    (dump / "pageviews.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    # the columns are the registry's, the array left out
    found = with_registry_columns(load_streams(streams), kafka)["pageviews"]
    columns = {c.name: c.type for c in found.columns}
    assert columns == {
        "userid": "string",
        "pageid": "string",
        "duration": "int",
        "premium": "boolean",
    }

    env = {
        "CLICKSTREAM_STREAMS": str(streams),
        "CLICKSTREAM_TABLES": str(tables),
        "CLICKSTREAM_STREAM": "pageviews",
        "CLICKSTREAM_OUTPUT": str(tmp_path / "out"),
        "CLICKSTREAM_SOURCE": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_SCHEMA_REGISTRY_URL": registry.url,
        "KAFKA_STOP_AT_END": "true",
    }
    done = run_flow(env, "tables", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stream pageviews: columns userid string, pageid string" in done.stderr
    assert "(left out: tags" in done.stderr

    spark_streams = {"pageviews": {"columns": columns, "event_time": None}}
    (tmp_path / "streams.json").write_text(json.dumps(spark_streams))
    spark = spark_rows(spark_python, tables, dump, tmp_path / "spark", tmp_path / "streams.json")
    theirs = spark["views_per_page"]
    assert len(theirs) > 20
    assert_same_rows(read_rows(tmp_path / "out", "views_per_page"), theirs, "views_per_page")
    assert read_rows(tmp_path / "out", "dead_letters") == []
