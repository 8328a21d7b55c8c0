"""Spark 4.0.1 with delta-spark 4.0.0 reads our Delta tables (some files ours, some
rewritten by `tools.maintain`) with the same rows and types as the Parquet format
gives; Spark itself does the comparison (scripts/spark_delta_check.py)."""

from __future__ import annotations

import subprocess
import sys

import orjson

from tests.processes import ROOT, clean_env
from tests.tables import replay_in_both_formats
from tools.replay_gen import generate

SPARK = ROOT / ".cache" / "spark"


def test_spark_reads_the_delta_tables_as_the_parquet_ones(spark_python, tmp_path):
    python = spark_python
    dump = tmp_path / "dump"
    # jitter past the delays: late events too; and one bad record: a dead letter
    generate(dump, events=8_000, rate=40, partitions=3, jitter_ms=90_000, seed=5)
    clicks = dump / "clickstream.jsonl"
    lines = clicks.read_bytes().splitlines()
    bad = orjson.loads(lines[10])
    bad["payload"] = "{not json"
    lines.insert(11, orjson.dumps(bad))
    clicks.write_bytes(b"\n".join(lines) + b"\n")
    replay_in_both_formats(dump, tmp_path, flush_rows=1_000)
    maintain = subprocess.run(
        [sys.executable, "-m", "tools.maintain", str(tmp_path / "delta")],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert maintain.returncode == 0, maintain.stderr
    check = subprocess.run(
        [
            str(python),
            str(ROOT / "scripts" / "spark_delta_check.py"),
            str(tmp_path / "delta"),
            str(tmp_path / "parquet"),
        ],
        env=clean_env(DELTA_JARS=str(SPARK / "jars")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in check.stdout.splitlines() if "rows" in line]
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]
    assert len(lines) == 6, check.stdout
    for line in lines:
        assert "0 only in Delta, 0 only in Parquet, types equal" in line, line
        assert " 0 rows" not in line.split(",")[0], f"every table should have rows: {line}"
