"""The partitioned Parquet sink: layout readers understand, resume cleanup, GCS."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import polars as pl
import pytest

from sinks.base import frame
from sinks.parquet import ParquetSink, TableRows
from sql import output_tables
from tests.processes import ROOT, clean_env
from tests.sinks.conftest import HOUR, T0, pages_rows
from tests.tables import read_rows
from tools.replay_gen import generate

PAGES_PER_MIN = next(t for t in output_tables() if t.name == "pages_per_min")


def test_hive_layout_is_read_by_polars_and_duckdb(tmp_path):
    sink = ParquetSink(str(tmp_path), "flow", [PAGES_PER_MIN], parts=1)
    part = sink.build_part("out", "0", None)
    rows = pages_rows(10) + pages_rows(3, start=T0 + HOUR)  # two hours -> two partitions
    part.write_batch([TableRows("pages_per_min", rows)])
    part.close()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    date = time.strftime("%Y-%m-%d", time.gmtime(T0 / 1000))
    hour0, hour1 = (time.strftime("%H", time.gmtime(t / 1000)) for t in (T0, T0 + HOUR))
    assert files == [
        f"pages_per_min/event_date={date}/event_hour={hour0}/flow-p000-0000000000.parquet",
        f"pages_per_min/event_date={date}/event_hour={hour1}/flow-p000-0000000000.parquet",
    ]
    df = pl.read_parquet(f"{tmp_path}/pages_per_min/**/*.parquet", hive_partitioning=True)
    assert df.columns == ["userid", "event_start", "event_end", "pages", "event_date", "event_hour"]
    assert df.schema["event_start"] == pl.Datetime("us", "UTC")
    assert df.height == 13
    relation = duckdb.sql(
        f"select count(*), min(pages) from read_parquet('{tmp_path}/pages_per_min/**/*.parquet',"
        " hive_partitioning = true)"
    )
    assert relation is not None and relation.fetchall() == [(13, 1)]
    assert not list(tmp_path.rglob(".*")), "no temporary files left"


def test_resume_removes_what_was_written_after_the_snapshot(tmp_path):
    sink = ParquetSink(str(tmp_path), "flow", [PAGES_PER_MIN], parts=2, flush_rows=1)
    part = sink.build_part("out", "1", None)
    part.write_batch([TableRows("pages_per_min", pages_rows(2))])
    state = part.snapshot()  # the last committed epoch: one flush written
    part.write_batch([TableRows("pages_per_min", pages_rows(2))])
    part.write_batch([TableRows("pages_per_min", pages_rows(2))])  # lost with the crash
    (tmp_path / "pages_per_min" / ".flow-p001-0000000003.parquet.tmp").write_bytes(b"half")
    other = sink.build_part("out", "0", None)  # another partition's files stay
    other.write_batch([TableRows("pages_per_min", pages_rows(2))])
    assert len(list(tmp_path.rglob("flow-p001-*.parquet"))) == 3

    sink.build_part("out", "1", state)
    assert sorted(p.name for p in tmp_path.rglob("flow-p001-*")) == ["flow-p001-0000000000.parquet"]
    assert len(list(tmp_path.rglob("flow-p000-*.parquet"))) == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_buffered_rows_are_flushed_by_age(tmp_path):
    sink = ParquetSink(str(tmp_path), "flow", [PAGES_PER_MIN], parts=1, flush_interval_s=0.2)
    part = sink.build_part("out", "0", None)
    part.write_batch([TableRows("pages_per_min", pages_rows(3))])
    assert read_rows(tmp_path, "pages_per_min") == []
    time.sleep(0.25)
    part.write_batch([None])  # a tick
    assert len(read_rows(tmp_path, "pages_per_min")) == 3


def test_dataflow_writes_the_same_tables_to_gcs(gcs, tmp_path):
    from bytewax.testing import run_main

    import dataflows.clickstream
    from config import Settings

    dump = tmp_path / "dump"
    generate(dump, events=5_000, rate=50, partitions=2, jitter_ms=70_000, seed=4)
    run_main(
        dataflows.clickstream.build(
            Settings(source="replay", replay_path=dump, output="gs://clickstream/out")
        )
    )
    run_main(
        dataflows.clickstream.build(
            Settings(source="replay", replay_path=dump, output=str(tmp_path / "local"))
        )
    )
    for table in ("pages_per_min", "errors_per_min_alert", "late_events"):
        got = read_rows("gs://clickstream/out", table)
        assert sorted(got) == sorted(read_rows(tmp_path / "local", table)), table
        assert got


def test_storage_outage_is_retried_and_nothing_is_lost(gcs, tmp_path):
    dump = tmp_path / "dump"
    generate(dump, events=60_000, rate=100, partitions=2, jitter_ms=20_000, seed=8)
    clean = clean_env()
    env = {
        **clean,
        "CLICKSTREAM_SOURCE": f"replay:{dump}",
        "STORAGE_EMULATOR_HOST": gcs.url,
        "CLICKSTREAM_OUTPUT": "gs://clickstream/out",
        "CLICKSTREAM_BATCH_SIZE": "20",
        "CLICKSTREAM_FLUSH_INTERVAL": "0.2",
    }
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "wrote" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.02)
        gcs.stop()
        time.sleep(20)
        assert proc.poll() is None, "the run waits for storage instead of failing"
        gcs.start()
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "retry" in log.read_text()
    subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"],
        cwd=ROOT,
        env={
            **env,
            "CLICKSTREAM_OUTPUT": str(tmp_path / "local"),
            "CLICKSTREAM_BATCH_SIZE": "2000",
        },
        check=True,
        capture_output=True,
    )
    for table in ("pages_per_min", "errors_per_min_alert"):
        got = read_rows("gs://clickstream/out", table)
        assert len(got) == len(set(got)), f"{table}: duplicates"
        assert sorted(got) == sorted(read_rows(tmp_path / "local", table)), table


def test_a_flush_whose_first_hundred_rows_have_a_null_key_keeps_every_row():
    # sessions of join misses (USERNAME null) first: the column's type must not be guessed
    # from them (a chaos run's resume failed its final flush at every restart that way)
    (sessions,) = [t for t in output_tables() if t.name == "click_user_sessions"]
    rows: list[tuple] = [(None, T0 + i, T0 + i + 30_000, 1) for i in range(150)]
    rows.append(("Ferd88", T0, T0 + 30_000, 2))

    df = frame(sessions, rows)

    assert df.height == 151 and df["username"].to_list()[-1] == "Ferd88"
    assert df["username"].null_count() == 150


def test_a_flush_failing_as_the_sink_closes_stops_with_its_reason(
    tmp_path, monkeypatch, stop_lines
):
    """Raised from close(), Bytewax's panic would abort the process and drop it."""
    sink = ParquetSink(str(tmp_path), "flow", [PAGES_PER_MIN], parts=1)
    part = sink.build_part("out", "0", None)
    part.write_batch([TableRows("pages_per_min", pages_rows(3))])

    def write_flush(*_args: object) -> None:
        raise ValueError("a column Polars could not write")

    monkeypatch.setattr(part, "write_flush", write_flush)
    with pytest.raises(SystemExit) as stopped:
        part.close()
    assert stopped.value.code == 1  # a restart may help
    assert stop_lines == ["sink flow-p000: closing: a column Polars could not write"]
