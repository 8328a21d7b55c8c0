"""`just query` over a stream: a bounded snapshot of its topic, decoded by its declaration,
against the real broker: the newest records of each partition, a count, a time range,
an empty topic, and one line saying how much was read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from kafka_client.settings import KafkaSettings
from tests.processes import ROOT, clean_env
from tools.produce import create_topics, producer

BASE_MS = 1_764_489_600_000  # 2025-11-30T08:00:00Z
PER_PARTITION = 300


@pytest.fixture
def topics(kafka_bootstrap: str, topic_name: str, tmp_path: Path) -> dict[str, str]:
    """A stream `orders` over a topic of 2 partitions, each with PER_PARTITION records
    stamped a second apart (every 25th not JSON), and a stream `empty` over an empty topic."""
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    names = {"orders": f"{topic_name}-orders", "empty": f"{topic_name}-empty"}
    create_topics(kafka, {names["orders"]: {}, names["empty"]: {}}, 2)
    p = producer(kafka)
    for partition in (0, 1):
        for i in range(PER_PARTITION):
            order = {"order_id": partition * 1_000 + i, "country": "NL", "amount": i / 2}
            value = b"{not json" if i % 25 == 24 else orjson.dumps(order)
            p.produce(
                names["orders"],
                value,
                key=str(i),
                partition=partition,
                timestamp=BASE_MS + i * 1_000,
            )
    assert p.flush(30) == 0
    streams = tmp_path / "streams"
    streams.mkdir()
    (streams / "orders.sql").write_text(
        "CREATE STREAM orders (order_id BIGINT, country STRING, amount DOUBLE) "
        f"WITH (KAFKA_TOPIC = '{names['orders']}', VALUE_FORMAT = 'JSON');"
    )
    (streams / "empty.sql").write_text(
        f"CREATE STREAM empty (a STRING) WITH (KAFKA_TOPIC = '{names['empty']}');"
    )
    return {"streams": str(streams), "bootstrap": kafka_bootstrap, **names}


def _query(topics: dict[str, str], tmp_path: Path, sql: str, *flags: str):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.query",
            "--output",
            str(tmp_path / "out"),
            "--format",
            "json",
            *flags,
            sql,
        ],
        cwd=ROOT,
        env=clean_env(
            CLICKSTREAM_STREAMS=topics["streams"], KAFKA_BOOTSTRAP_SERVERS=topics["bootstrap"]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    said = [line for line in done.stderr.splitlines() if line.strip()]
    return rows, said


def test_a_count_reads_the_newest_records_of_each_partition_and_says_how_many(topics, tmp_path):
    rows, said = _query(topics, tmp_path, "select count(*) as n from orders")
    bad = 2 * (PER_PARTITION // 25)
    assert rows == [{"n": 2 * PER_PARTITION - bad}]
    assert said == [
        f"orders: {2 * PER_PARTITION - bad} records of topic {topics['orders']} (2 partitions, "
        f"the newest 1,000 of each); {bad} dead letters left out"
    ]
    rows, said = _query(topics, tmp_path, "select count(*) as n from orders", "--newest", "50")
    assert rows == [{"n": 2 * (50 - 2)}]  # 2 of each partition's newest 50 are not JSON


def test_a_limit_shows_the_declared_columns_then_kafkas(topics, tmp_path):
    rows, _ = _query(
        topics,
        tmp_path,
        'select * from orders where partition = 1 order by "offset" limit 3',
    )
    assert [r["order_id"] for r in rows] == [1_000, 1_001, 1_002]  # the newest 1000 is all
    assert list(rows[0]) == [
        "order_id",
        "country",
        "amount",
        "key",
        "topic",
        "partition",
        "offset",
        "timestamp",
    ]
    assert rows[1]["key"] == "1" and rows[1]["topic"] == topics["orders"]
    assert rows[1]["timestamp"] == "2025-11-30T08:00:01+00:00"


def test_a_time_range_reads_the_records_stamped_in_it(topics, tmp_path):
    rows, said = _query(
        topics,
        tmp_path,
        "select min(order_id % 1000) as first, max(order_id % 1000) as last, count(*) as n "
        "from orders",
        "--since",
        "2025-11-30T08:01:00Z",
        "--until",
        "2025-11-30T08:02:00",
    )
    # seconds 60..119 of each partition, less those that are not JSON
    bad = sum(1 for i in range(60, 120) if i % 25 == 24)
    assert rows == [{"first": 60, "last": 119, "n": 2 * (60 - bad)}]
    assert "stamped from 2025-11-30T08:01:00+00:00 until 2025-11-30T08:02:00+00:00" in said[0]


def test_an_empty_topic_is_an_empty_view_with_its_columns(topics, tmp_path):
    rows, said = _query(topics, tmp_path, "select count(*) as n, count(a) as a from empty")
    assert rows == [{"n": 0, "a": 0}]
    assert said == [
        f"empty: 0 records of topic {topics['empty']} (2 partitions, the newest 1,000 of each)"
    ]
