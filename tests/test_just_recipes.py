"""The `just` recipes check their arguments: a wrong one prints usage, exit status 2, no
traceback, and nothing left behind (no recovery store)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.processes import ROOT, clean_env
from tools.show import read_table

JUST = str(Path(sys.executable).with_name("just"))


def just(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JUST, *args], cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["run-recoverable", "nosuchflow"], "usage: just run-recoverable FLOW"),
        (["demo", "fast"], "usage: just demo [RATE] [COUNT]"),
        (["demo-kafka", "a-minute"], "usage: just demo-kafka [SECONDS] [RATE]"),
        (["query", "--format", "xml", "select 1"], "usage: python -m tools.query"),
        (["produce", "--rate", "fast"], "usage:"),
    ],
)
def test_a_wrong_argument_prints_usage(args, usage, tmp_path):
    proc = just(*args, CLICKSTREAM_RECOVERY_DIR=str(tmp_path / "recovery"))
    assert proc.returncode == 2, proc.stderr
    assert usage in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert "error: Recipe" not in proc.stderr  # no second line from just itself
    assert not (tmp_path / "recovery").exists()


def test_a_bad_setting_leaves_no_recovery_store(tmp_path):
    proc = just(
        "run-recoverable",
        "clickstream",
        CLICKSTREAM_OUTPUT="/proc/forbidden",
        CLICKSTREAM_RECOVERY_DIR=str(tmp_path / "recovery"),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: CLICKSTREAM_OUTPUT /proc/forbidden: cannot create the directory: "
        "no such file or directory: /proc/forbidden"
    ]
    assert not (tmp_path / "recovery").exists()


BYTES_PER_USER = """
SELECT userid, window.start AS event_start, window.end AS event_end,
       sum(bytes) AS bytes, avg(bytes) AS avg_bytes, min(bytes) AS min_bytes,
       max(bytes) AS max_bytes, count(DISTINCT ip) AS ips
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
GROUP BY window(timestamp, '1 minute'), userid
"""


def test_just_demo_computes_a_table_added_as_a_sql_file(tmp_path):
    """The README's example: a folder with one new .sql file, no Python."""
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "bytes_per_user.sql").write_text(BYTES_PER_USER)
    out = tmp_path / "out"
    proc = just("demo", "4000", "4000", CLICKSTREAM_TABLES=str(tables), CLICKSTREAM_OUTPUT=str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bytes_per_user:" in proc.stdout and "bytes_per_user: no rows" not in proc.stdout
    df = read_table(str(out), "bytes_per_user")
    assert df is not None
    assert dict(df.schema) | {} == {
        "userid": pl.Int64,
        "event_start": pl.Datetime("us", "UTC"),
        "event_end": pl.Datetime("us", "UTC"),
        "bytes": pl.Int64,
        "avg_bytes": pl.Float64,
        "min_bytes": pl.Int64,
        "max_bytes": pl.Int64,
        "ips": pl.Int64,
        "event_date": pl.String,
        "event_hour": pl.String,
    }
    # the tools know the folder's tables as the dataflows do, from CLICKSTREAM_TABLES
    query = "select count(*) as n, sum(ips) as ips from bytes_per_user"
    found = just("query", "--output", str(out), query, CLICKSTREAM_TABLES=str(tables))
    assert found.returncode == 0, found.stderr
    assert str(df.height) in found.stdout
    assert not (out / "pages_per_min").exists()  # only the folder's tables
    again = just("demo", "4000", "10", CLICKSTREAM_TABLES=str(tables), CLICKSTREAM_OUTPUT=str(out))
    assert again.returncode == 2 and "is not empty" in again.stderr


@pytest.mark.kafka
@pytest.mark.monitoring
def test_just_demo_kafka_runs_on_avro_through_a_schema_registry_with_alerts(tmp_path):
    """The whole local mode in Avro: the producer writes Datagen's Avro, enrich reads it
    and writes ksqlDB's Avro, the table dataflows read that. With KAFKA_VALUE_FORMAT=avro
    a JSON record anywhere would be a dead letter, so rows and no dead letters say it all
    went through Avro. With `alerts`, the rows of errors_per_min_alert reach a local
    Alertmanager, which lists one alert per status of the table, and no other."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [JUST, "demo-kafka", "8", "100", "avro", "alerts"],
        cwd=ROOT,
        env=clean_env(CLICKSTREAM_OUTPUT=str(out)),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "demo: values in avro, schemas in the registry at http://127.0.0.1:" in proc.stdout
    for table in ("pages_per_min", "click_user_sessions", "user_ip_activity"):
        df = read_table(str(out), table)
        assert df is not None and df.height > 0, table
    dead = read_table(str(out), "dead_letters")
    assert dead is None or dead.height == 0, dead
    assert "schema registry: stopped" in proc.stdout  # and nothing left running
    assert "alertmanager: stopped" in proc.stdout
    listed = proc.stdout.split("demo: the alerts Alertmanager holds")[1]
    alerted = set(
        re.findall(
            r'alertname="errors_per_min_alert" dataflow="clickstream" status="(\d+)"', listed
        )
    )
    errors = read_table(str(out), "errors_per_min_alert")
    assert errors is not None and alerted == {str(s) for s in errors["status"]}, listed
