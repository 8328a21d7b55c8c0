"""Stream declarations: what a `CREATE STREAM` file says, the events built from it (with
Spark's `from_json` nulls), the payload's event time, and one line for each declaration
that is refused, naming the file and the line."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from typing import Any

import msgspec
import pytest

from events.streams import Column, EventTime, Stream, event_type, permissive_event, times_of
from setting import ConfigError
from sql import REPO_STREAMS, load_streams, load_tables
from tests.processes import ROOT, clean_env, run_flow

ORDERS = """-- a comment first
CREATE STREAM orders (
    order_id BIGINT, country VARCHAR, amount DOUBLE, paid BOOLEAN, placed_at TIMESTAMP
) WITH (KAFKA_TOPIC = 'shop.orders', VALUE_FORMAT = 'JSON', TIMESTAMP = 'placed_at');
"""


def _declare(tmp_path, text: str, name: str = "orders") -> dict[str, Stream]:
    (tmp_path / f"{name}.sql").write_text(text)
    return load_streams(tmp_path)


def test_a_declaration_says_topic_format_columns_and_event_time(tmp_path):
    (orders,) = _declare(tmp_path, ORDERS).values()
    assert orders.name == "orders" and orders.topic == "shop.orders"
    assert orders.value_format == "json"
    assert orders.columns == (
        Column("order_id", "bigint"),
        Column("country", "string"),
        Column("amount", "double"),
        Column("paid", "boolean"),
        Column("placed_at", "timestamp"),
    )
    assert orders.event_time == EventTime("placed_at", "iso8601")
    fields = msgspec.structs.fields(event_type(orders))
    # a timestamp column is the event time, not a SQL column (yet); Kafka's columns are
    # there, and no field of a value can fill them
    assert [(f.name, f.type, f.default) for f in fields] == [
        ("order_id", int | None, None),
        ("country", str | None, None),
        ("amount", float | None, None),
        ("paid", bool | None, None),
        ("key", str | None, None),
        ("topic", str | None, None),
        ("partition", int | None, None),
        ("offset", int | None, None),
        ("timestamp", int | None, None),
    ]
    order = msgspec.json.decode(
        b'{"country": "NL", "topic": "x", "timestamp": 5, "key": "k"}', type=event_type(orders)
    )
    assert order == event_type(orders)(country="NL")


def test_the_repo_streams_are_the_datagen_shapes():
    streams = load_streams(REPO_STREAMS)
    assert set(streams) == {"clickstream", "user_clickstream", "clickstream_users"}
    assert streams["clickstream"].topic == "clickstream"
    assert streams["user_clickstream"].topic == "USER_CLICKSTREAM"
    assert streams["clickstream_users"].topic == "clickstream_users"
    # the value format is KAFKA_VALUE_FORMAT's, the event time the record timestamp
    assert all(s.value_format is None and s.event_time is None for s in streams.values())
    click: Any = msgspec.json.decode(
        b'{"ip":"1.2.3.4","userid":12,"request":"GET /a.html","status":"404","bytes":"278"}',
        type=event_type(streams["clickstream"]),
        strict=False,
    )
    assert (click.userid, click.status, click.bytes, click.agent) == (12, 404, 278, None)


def test_fields_that_are_missing_or_do_not_cast_are_null_as_spark_makes_them():
    shape = event_type(Stream("s", "t", (Column("n", "int"), Column("x", "double"))))
    assert permissive_event(shape, {"n": "abc", "x": "1.5"}) == shape(n=None, x=1.5)
    # Spark's CAST('4.9' AS INT) is 4 without ANSI mode
    assert permissive_event(shape, {"n": "4.9"}) == shape(n=4, x=None)
    assert permissive_event(shape, {"n": [1]}) == shape()
    assert permissive_event(shape, [1, 2]) == "not an object: the value is an array"
    assert permissive_event(shape, "text") == "not an object: the value is a string"


@pytest.mark.parametrize(
    ("time_format", "value", "expected"),
    [
        ("epoch_millis", 1_764_489_600_123, 1_764_489_600_123),
        ("epoch_millis", "1764489600123", 1_764_489_600_123),
        ("epoch_seconds", 1_764_489_600, 1_764_489_600_000),
        ("epoch_seconds", 1_764_489_600.25, 1_764_489_600_250),
        ("iso8601", "2025-11-30T08:00:00.123Z", 1_764_489_600_123),
        ("iso8601", "2025-11-30T10:00:00.123+02:00", 1_764_489_600_123),
        ("iso8601", "2025-11-30 08:00:00", 1_764_489_600_000),  # no zone: UTC
    ],
)
def test_the_event_time_is_read_from_the_payload(time_format, value, expected):
    read = times_of(EventTime("at", time_format))
    assert read([msgspec.json.encode({"at": value, "other": 1})]) == ([expected], {})


def test_a_value_without_a_readable_time_says_why():
    read = times_of(EventTime("at", "iso8601"))
    times, errors = read([b'{"x": 1}', b'{"at": "yesterday"}', b"{not json", b'{"at": 5}'])
    assert times == [0, 0, 0, 0]
    assert errors[0] == "no event time: at is null or missing"
    assert errors[1].startswith("no event time: Invalid isoformat string")
    assert errors[2].startswith("no event time: JSON is malformed")
    assert errors[3] == "no event time: 5 is not an ISO-8601 string"


REFUSED = [
    ("SELECT 1", 1, "a stream is declared with CREATE STREAM name (columns) WITH (...)"),
    ("CREATE STREAM orders (a STRING)", 1, "WITH (KAFKA_TOPIC = '...') is missing"),
    (
        "CREATE STREAM orders (a STRING)\nWITH (KAFKA_TOPIC='t', VALUE_FORMAT='XML')",
        1,
        "VALUE_FORMAT 'xml' is not one of json, avro, json_sr, protobuf, auto",
    ),
    (
        "CREATE STREAM orders (\n  a STRING,\n  b DECIMAL(10, 2)\n) WITH (KAFKA_TOPIC='t')",
        3,
        "column b: type DECIMAL(10, 2) is not one of STRING, INT, BIGINT, DOUBLE, BOOLEAN, "
        "TIMESTAMP",
    ),
    (
        "CREATE STREAM orders (a STRING) WITH (KAFKA_TOPIC='t', PARTITIONS='4')",
        1,
        "unknown option PARTITIONS (options: KAFKA_TOPIC, VALUE_FORMAT, TIMESTAMP, "
        "TIMESTAMP_FORMAT)",
    ),
    (
        "CREATE STREAM orders (a STRING) WITH (KAFKA_TOPIC='t', TIMESTAMP='b')",
        1,
        "TIMESTAMP = 'b' is not a declared column",
    ),
    (
        "CREATE STREAM orders (a BIGINT) WITH (KAFKA_TOPIC='t', TIMESTAMP='a', "
        "TIMESTAMP_FORMAT='yyyy-MM-dd')",
        1,
        "TIMESTAMP_FORMAT 'yyyy-mm-dd' is not one of epoch_millis, epoch_seconds, iso8601",
    ),
    (
        "CREATE STREAM orders (a BIGINT) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='AVRO', "
        "TIMESTAMP='a')",
        1,
        "TIMESTAMP from a column of a avro value is not supported yet",
    ),
    (
        "CREATE STREAM orders WITH (KAFKA_TOPIC='t')",
        1,
        "no columns: only a registry format",
    ),
    ("CREATE STREAM others (a STRING) WITH (KAFKA_TOPIC='t')", 1, "the file declares others"),
    (
        "CREATE STREAM orders (a STRING, A INT) WITH (KAFKA_TOPIC='t')",
        1,
        "two columns are named A",
    ),
    (
        "CREATE STREAM orders (\n  `offset` BIGINT\n) WITH (KAFKA_TOPIC='t')",
        2,
        "column offset: the name of a Kafka column",
    ),
    (
        "CREATE STREAM orders (`user-id` BIGINT) WITH (KAFKA_TOPIC='t')",
        1,
        "column 'user-id': a column name is letters, digits and _",
    ),
    ("CREATE STREAM orders (a STRING) WITH (KAFKA_TOPIC='t'", 1, "cannot parse"),
]


@pytest.mark.parametrize(("text", "line", "message"), REFUSED)
def test_a_refused_declaration_is_one_line_naming_file_and_line(tmp_path, text, line, message):
    with pytest.raises(ConfigError) as refused:
        _declare(tmp_path, text)
    said = str(refused.value)
    assert "\n" not in said
    assert said.startswith(f"{tmp_path / 'orders.sql'}:{line}: "), said
    assert message in said, said


def test_a_table_over_a_stream_that_is_not_declared_is_one_line(tmp_path):
    (tmp_path / "streams").mkdir()
    streams = _declare(tmp_path / "streams", ORDERS)
    (tmp_path / "t.sql").write_text(
        "SELECT country, window.start AS s, count(*) AS n\nFROM shipments "
        "WATERMARK timestamp DELAY OF INTERVAL 1 MINUTE\n"
        "GROUP BY window(timestamp, '1 minute'), country"
    )
    with pytest.raises(ConfigError, match=r"t.sql:2: unknown stream shipments \(streams: orders\)"):
        load_tables(tmp_path, streams=streams)


def test_a_declared_column_is_a_sql_column_and_an_unknown_one_says_which_there_are(tmp_path):
    streams = _declare(tmp_path, ORDERS)
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "t.sql").write_text(
        "SELECT country, window.start AS s, sum(amount) AS revenue FROM orders "
        "WATERMARK timestamp DELAY OF INTERVAL 1 MINUTE WHERE paid AND order_id > 3 "
        "GROUP BY window(timestamp, '1 minute'), country"
    )
    (table,) = load_tables(tables, streams=streams)
    assert table.table.columns == [("country", "String"), ("s", "Int64"), ("revenue", "Float64")]
    (tables / "t.sql").write_text(
        "SELECT sku, window.start AS s, count(*) AS n FROM orders "
        "WATERMARK timestamp DELAY OF INTERVAL 1 MINUTE GROUP BY window(timestamp, '1 minute'), sku"
    )
    with pytest.raises(ConfigError, match=r"unknown column sku \(columns of orders: order_id, "):
        load_tables(tables, streams=streams)


def test_a_declaration_read_before_is_not_parsed_again(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CLICKSTREAM_SQL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "streams").mkdir()
    first = _declare(tmp_path / "streams", ORDERS)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    code = (
        "import sys; from sql.streams import load_streams; "
        f"s = load_streams({str(tmp_path / 'streams')!r}); "
        "print(repr(s['orders'])); print('sqlglot' in sys.modules)"
    )
    env = clean_env(CLICKSTREAM_SQL_CACHE=str(tmp_path / "cache"))
    again = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert again.stdout.splitlines() == [repr(first["orders"]), "False"]
    # a damaged entry is read anew
    (entry,) = (tmp_path / "cache").glob("*.json")
    entry.write_text("{")
    with caplog.at_level(logging.WARNING, logger="sql.streams"):
        assert load_streams(tmp_path / "streams") == first
    assert "is not a read stream" in caplog.text


def test_dataflows_tables_without_a_stream_or_with_an_unknown_one_is_one_line(tmp_path):
    for stream, said in ((None, "CLICKSTREAM_STREAM: which stream?"), ("shipments", "no stream")):
        env = {"CLICKSTREAM_OUTPUT": str(tmp_path / "out")}
        if stream is not None:
            env["CLICKSTREAM_STREAM"] = stream
        done = run_flow(env, flow="tables", timeout=60)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert said in line, line


def test_the_datagen_makes_only_the_repo_streams(tmp_path):
    from config import Settings
    from dataflows.common import stream_tables

    (tmp_path / "streams").mkdir()
    _declare(tmp_path / "streams", ORDERS)
    settings = Settings(output=str(tmp_path / "out"), streams=str(tmp_path / "streams"))
    with pytest.raises(ConfigError, match="datagen makes clickstream and user_clickstream"):
        stream_tables(settings, "orders")


def test_an_event_crosses_to_a_process_that_declared_the_same_stream():
    # events that may be late travel to their shard's process with their batch (pickled)
    shape = event_type(load_streams(REPO_STREAMS)["clickstream"])
    event = shape(ip="1.2.3.4", userid=3, timestamp=5)
    code = (
        "import pickle, sys; from sql import load_streams; from events.streams import "
        "event_type; [event_type(s) for s in load_streams().values()]; "
        "print(repr(pickle.loads(sys.stdin.buffer.read())))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_env(),
        input=pickle.dumps(event),
        capture_output=True,
        check=True,
    )
    assert done.stdout.decode().strip() == repr(event)
