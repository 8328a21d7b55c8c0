"""Records with broken timestamps: one from a producer whose clock says 2100 changes no
table row and is one dead letter, and a record without a timestamp is a dead letter
too; on replay and on Kafka, on one and two workers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main

import dataflows.clickstream
import dataflows.user_clickstream
from config import Settings
from kafka_client.settings import KafkaSettings
from tests.tables import expected_tables, read_rows
from tools.produce import create_topics, produce_dump
from tools.replay_gen import generate

YEAR_2100 = 4_102_444_800_000
FILES = ("clickstream.jsonl", "user_clickstream.jsonl")


def _insert(clean: Path, out: Path, at: int, ts: int) -> None:
    """`clean`'s dumps with a copy of line `at` stamped `ts` inserted after it."""
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        lines = (clean / name).read_bytes().splitlines()
        record = orjson.loads(lines[at])
        record["ts"] = ts
        lines.insert(at + 1, orjson.dumps(record))
        (out / name).write_bytes(b"\n".join(lines) + b"\n")


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A clean dump (4 partitions, jitter, pauses) and the same with one record from 2100."""
    clean = tmp_path_factory.mktemp("clean")
    generate(
        clean,
        events=3_000,
        rate=30,
        partitions=4,
        jitter_ms=20_000,
        seed=31,
        pause_every=800,
        pause_ms=100_000,
    )
    spoiled = tmp_path_factory.mktemp("spoiled")
    _insert(clean, spoiled, at=200, ts=YEAR_2100)
    return clean, spoiled


@pytest.fixture(scope="module")
def expected(dumps: tuple[Path, Path]) -> dict[str, set[tuple]]:
    return expected_tables(dumps[0])


def _run_both(entry_point, settings: Settings) -> None:
    entry_point(dataflows.clickstream.build(settings))
    entry_point(dataflows.user_clickstream.build(settings))


def _assert_unchanged_with_one_dead_letter_each(output: Path, expected: dict) -> None:
    for table, rows in expected.items():
        got = read_rows(output, table)
        assert len(got) == len(set(got)), table
        assert set(got) == rows, table
    assert read_rows(output, "late_events") == []
    dead = read_rows(output, "dead_letters")
    assert sorted(d[0] for d in dead) == ["clickstream", "user_clickstream"]
    for d in dead:
        assert d[4] == YEAR_2100  # the dead letter keeps the record's own timestamp
        assert "timestamp 2100-01-01T00:00:00.000Z is more than 3600 s ahead" in d[7]


def test_a_far_future_record_is_a_dead_letter_on_replay(entry_point, dumps, expected, tmp_path):
    _run_both(entry_point, Settings(source="replay", replay_path=dumps[1], output=str(tmp_path)))
    _assert_unchanged_with_one_dead_letter_each(tmp_path, expected)


def test_without_the_guard_the_same_record_spoils_its_partition(dumps, expected, tmp_path):
    # what the guard prevents: the record moves its partition to 2100, later ones are late
    settings = Settings(
        source="replay", replay_path=dumps[1], output=str(tmp_path), max_future_skew_s=1e13
    )
    run_main(dataflows.clickstream.build(settings))
    assert len(read_rows(tmp_path, "late_events")) > 100
    assert set(read_rows(tmp_path, "pages_per_min")) != expected["pages_per_min"]


def test_a_record_without_timestamp_is_a_dead_letter_on_replay(dumps, expected, tmp_path):
    # kcat writes ts -1 for a record whose timestamp is not available
    _insert(dumps[0], tmp_path / "dump", at=300, ts=-1)
    run_main(
        dataflows.clickstream.build(
            Settings(source="replay", replay_path=tmp_path / "dump", output=str(tmp_path / "out"))
        )
    )
    assert set(read_rows(tmp_path / "out", "pages_per_min")) == expected["pages_per_min"]
    assert read_rows(tmp_path / "out", "late_events") == []
    [dead] = read_rows(tmp_path / "out", "dead_letters")
    assert (dead[4], dead[7]) == (None, "no record timestamp")


def test_a_far_future_record_is_a_dead_letter_from_kafka(
    entry_point, kafka_bootstrap, topic_name, dumps, expected, tmp_path
):
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        stop_at_end=True,
        clickstream_topic=f"{topic_name}-c",
        user_clickstream_topic=f"{topic_name}-u",
    )
    # Kafka 4 brokers refuse records more than an hour ahead by default; the producers
    # this guards against write to topics (and brokers) that allow them
    allow_future = {"message.timestamp.after.max.ms": str(2**63 - 1)}
    create_topics(
        kafka,
        {kafka.clickstream_topic: allow_future, kafka.user_clickstream_topic: allow_future},
        4,
    )
    produce_dump(kafka, dumps[1] / FILES[0], kafka.clickstream_topic)
    produce_dump(kafka, dumps[1] / FILES[1], kafka.user_clickstream_topic)
    _run_both(entry_point, Settings(source="kafka", kafka=kafka, output=str(tmp_path)))
    _assert_unchanged_with_one_dead_letter_each(tmp_path, expected)
