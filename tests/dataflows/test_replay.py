"""Replay end to end: both dataflows from kcat dumps to Parquet, on one and two workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import dataflows.clickstream
import dataflows.user_clickstream
from config import Settings
from tests.processes import ROOT, clean_env
from tests.tables import expected_tables, read_rows
from tools.replay_gen import generate, kcat_line


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    # 3 partitions interleaved, pauses longer than the windows, jitter within the delays
    generate(
        out,
        events=6_000,
        rate=40,
        partitions=3,
        jitter_ms=25_000,
        seed=11,
        pause_every=700,
        pause_ms=150_000,
    )
    return out


@pytest.fixture(scope="module")
def expected(replay_dir: Path) -> dict[str, set[tuple]]:
    return expected_tables(replay_dir)


def _settings(
    replay_dir: Path,
    output: Path,
    batch_size: int,
    table_format: str = "parquet",
    replay_parts: int | None = None,
) -> Settings:
    return Settings(
        source="replay",
        replay_path=replay_dir,
        output=str(output),
        batch_size=batch_size,
        table_format=table_format,  # type: ignore[arg-type]
        replay_parts=replay_parts,
    )


@pytest.mark.parametrize("table_format", ["parquet", "delta"])
@pytest.mark.parametrize(("batch_size", "parts"), [(1, None), (500, None), (500, 3)])
def test_replay_gives_the_exact_tables(
    entry_point, replay_dir, expected, tmp_path, batch_size, parts, table_format
):
    """With the file read as one part or as several (`parts`)."""
    settings = _settings(replay_dir, tmp_path, batch_size, table_format, parts)
    entry_point(dataflows.clickstream.build(settings))
    entry_point(dataflows.user_clickstream.build(settings))
    for table, rows in expected.items():
        got = read_rows(tmp_path, table)
        assert len(got) == len(set(got)), f"{table}: duplicate rows"
        assert set(got) == rows, table
        assert rows, f"{table}: the test data should produce rows"
    assert read_rows(tmp_path, "late_events") == []
    assert read_rows(tmp_path, "dead_letters") == []


@pytest.mark.parametrize("parts", [None, 2])
def test_backfill_dump_partition_by_partition_is_not_late(tmp_path, parts):
    dump = tmp_path / "dump"
    generate(dump, events=3_000, rate=20, partitions=4, jitter_ms=5_000, seed=5, by_partition=True)
    out = tmp_path / "out"
    from bytewax.testing import run_main

    run_main(dataflows.clickstream.build(_settings(dump, out, 300, replay_parts=parts)))
    assert read_rows(out, "late_events") == []
    assert set(read_rows(out, "pages_per_min")) == expected_tables(dump)["pages_per_min"]


@pytest.mark.parametrize("table_format", ["parquet", "delta"])
def test_python_m_bytewax_run_with_two_workers(replay_dir, expected, tmp_path, table_format):
    env = {
        **os.environ,
        "CLICKSTREAM_SOURCE": f"replay:{replay_dir}",
        "CLICKSTREAM_OUTPUT": str(tmp_path),
        "CLICKSTREAM_TABLE_FORMAT": table_format,
    }
    for flow in ("clickstream", "user_clickstream"):
        subprocess.run(
            [sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:flow", "-w", "2"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    for table, rows in expected.items():
        assert set(read_rows(tmp_path, table)) == rows, table


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLICKSTREAM_SOURCE": "s3"}, "CLICKSTREAM_SOURCE: 's3' is not one of"),
        ({"CLICKSTREAM_SOURCE": "replay:/nonexistent"}, "does not exist"),
        ({"CLICKSTREAM_DATAGEN_RATE": "fast"}, "CLICKSTREAM_DATAGEN_RATE: expected a number"),
        ({"CLICKSTREAM_SOURCE": "kafka"}, "needs KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_bad_configuration_is_one_clear_line(env, message):
    clean = clean_env()
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_late_record_is_recorded_with_where_it_was_read(tmp_path, entry_point):
    # Partition 1 reaches 300 s, then a record of 100 s arrives there: every one of its
    # 12 pages_per_min windows ends by 105 s, at or before its partition's watermark
    # (300 s - 60 s), so it is late for all of them; the row says where it was read.
    base = 1_700_000_000_000 - 1_700_000_000_000 % 60_000

    def click(userid: int) -> bytes:
        payload = {"ip": "1.2.3.4", "userid": userid, "request": "GET /index.html HTTP/1.1"}
        return orjson.dumps({**payload, "status": "200"})

    lines = [
        kcat_line("clickstream", 0, 0, base + 10_000, "k", click(1)),
        kcat_line("clickstream", 1, 0, base + 20_000, "k", click(1)),
        kcat_line("clickstream", 1, 1, base + 300_000, "k", click(1)),
        kcat_line("clickstream", 0, 1, base + 290_000, "k", click(1)),
        kcat_line("clickstream", 1, 2, base + 100_000, "k", click(7)),
        kcat_line("clickstream", 0, 2, base + 310_000, "k", click(1)),
    ]
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "clickstream.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    entry_point(dataflows.clickstream.build(_settings(dump, out, 2)))
    assert read_rows(out, "late_events") == [
        (
            "clickstream",
            "pages_per_min",
            "7",
            base + 100_000,
            base + 240_000,
            12,
            12,
            "all 12 windows closed",
            "clickstream",
            1,
            2,
        )
    ]
    assert not any(row[0] == 7 for row in read_rows(out, "pages_per_min"))
    assert read_rows(out, "dead_letters") == []
