"""`python -m tools.query`: every table is a view, every output format, local and GCS,
the interactive prompt, and bad SQL as one line with exit status 2."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import polars as pl
import pytest
from bytewax.testing import run_main

import dataflows.clickstream
import dataflows.user_clickstream
from config import Settings
from sql import output_tables
from tests.processes import ROOT, clean_env
from tests.tables import read_rows
from tools.charts import health_figures
from tools.query import connect
from tools.replay_gen import generate


def query(*args: str, output: str | Path, stdin: str | None = None, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "tools.query", "--output", str(output), *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        input=stdin.encode() if stdin is not None else None,
        timeout=120,
    )


@pytest.fixture(scope="module", params=["parquet", "delta"])
def output(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Both dataflows over a dump with late records (jitter past the delay) and a bad one,
    as Parquet and as Delta tables (the latter compacted by `tools.maintain`, so its
    files are partly ours and partly delta-rs's)."""
    dump = tmp_path_factory.mktemp("dump")
    generate(dump, events=3_000, rate=20, partitions=2, jitter_ms=90_000, seed=9)
    lines = (dump / "clickstream.jsonl").read_bytes().splitlines()
    bad = orjson.loads(lines[10])
    bad["payload"] = "{not json"
    lines.insert(11, orjson.dumps(bad))
    (dump / "clickstream.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path_factory.mktemp("out")
    settings = Settings(
        source="replay",
        replay_path=dump,
        output=str(out),
        table_format=request.param,
        flush_rows=500,  # several files per partition, for compaction to merge
    )
    run_main(dataflows.clickstream.build(settings))
    run_main(dataflows.user_clickstream.build(settings))
    if request.param == "delta":
        before = {t.name: Counter(read_rows(out, t.name)) for t in output_tables()}
        maintain = [sys.executable, "-m", "tools.maintain", str(out), "--tables", "pages_per_min"]
        done = subprocess.run(maintain, cwd=ROOT, env=clean_env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        found = re.search(r"pages_per_min: compacted (\d+) files.* -> (\d+) files", done.stdout)
        assert found and int(found[2]) < int(found[1]), done.stdout
        assert {t.name: Counter(read_rows(out, t.name)) for t in output_tables()} == before
    for table in output_tables():
        assert read_rows(out, table.name), f"{table.name}: the test data should fill it"
    return out


def _csv(proc: subprocess.CompletedProcess) -> list[dict[str, str]]:
    assert proc.returncode == 0, proc.stderr.decode()
    return list(csv.DictReader(io.StringIO(proc.stdout.decode())))


def test_every_table_is_a_view_with_all_its_rows(output):
    sql = " union all ".join(
        f"select '{t.name}' as name, count(*) as n from {t.name}" for t in output_tables()
    )
    counts = {
        row["name"]: int(row["n"]) for row in _csv(query("--format", "csv", sql, output=output))
    }
    assert counts == {t.name: len(read_rows(output, t.name)) for t in output_tables()}


def test_csv_is_a_header_then_the_rows(output):
    proc = query(
        "--format",
        "csv",
        "select userid, epoch_ms(event_start) as s, pages from pages_per_min order by all",
        output=output,
    )
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "userid,s,pages"
    want = sorted((r[0], r[1], r[3]) for r in read_rows(output, "pages_per_min"))
    got = [tuple(int(v) for v in line.split(",")) for line in lines[1:]]
    assert got == want


def test_json_is_one_object_per_row(output):
    proc = query("--format", "json", "select * from errors_per_min_alert", output=output)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == len(read_rows(output, "errors_per_min_alert"))
    assert all(row["errors"] > 5 for row in rows)  # the alert threshold, as written


def test_parquet_goes_to_a_file(output, tmp_path):
    proc = query("--format", "parquet", "select * from click_user_sessions", output=output)
    assert proc.returncode == 0, proc.stderr.decode()
    (tmp_path / "s.parquet").write_bytes(proc.stdout)
    df = pl.read_parquet(tmp_path / "s.parquet")
    assert df.height == len(read_rows(output, "click_user_sessions"))
    assert {"username", "event_start", "event_end", "events"} <= set(df.columns)


def test_table_is_readable(output):
    proc = query("select status, errors from errors_per_min_alert limit 3", output=output)
    text = proc.stdout.decode()
    assert proc.returncode == 0 and "status" in text and "errors" in text and "(3 rows)" in text


def test_the_notebooks_queries_work_as_written(output):
    # the notebook names its columns EVENT_start, EVENT_end and USERNAME: SQL names are
    # case-insensitive, so they work against ours
    for sql in (
        "select * from pages_per_min",
        "select count(*) from user_ip_activity",
        "SELECT USERNAME, EVENT_start, EVENT_end, events FROM click_user_sessions",
        "SELECT status, EVENT_start, errors FROM errors_per_min_alert WHERE errors > 5",
    ):
        proc = query(sql, output=output)
        assert proc.returncode == 0, (sql, proc.stderr.decode())


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "select * from nosuch_table",
            "Catalog Error: Table with name nosuch_table does not exist",
        ),
        ("selec * from pages_per_min", "Parser Error: syntax error"),
        ("select nosuch_column from pages_per_min", "Binder Error"),
    ],
)
def test_bad_sql_is_one_line_and_exit_2(output, sql, message):
    proc = query(sql, output=output)
    assert proc.returncode == 2
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_table_without_files_is_an_empty_view(tmp_path):
    rows = _csv(query("--format", "csv", "select count(*) as n from late_events", output=tmp_path))
    assert rows == [{"n": "0"}]


def test_a_users_tables_are_views_and_listed_on_the_dashboard(tmp_path, monkeypatch):
    """The tables of CLICKSTREAM_TABLES, still without rows: views of their own types."""
    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "avg_bytes.sql").write_text(
        "SELECT userid, window.start AS event_start, avg(bytes) AS avg_bytes, "
        "max(request) AS last FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 1 MINUTE "
        "GROUP BY window(timestamp, '1 minute'), userid"
    )
    monkeypatch.setenv("CLICKSTREAM_TABLES", str(folder))
    con = connect(str(tmp_path / "out"))
    types = {c[0]: str(c[1]) for c in con.execute("select * from avg_bytes").description}
    assert {k: types[k] for k in ("userid", "avg_bytes", "last")} == {
        "userid": "BIGINT",
        "avg_bytes": "DOUBLE",
        "last": "VARCHAR",
    }
    health, _, _ = health_figures(con)
    assert [h["table"] for h in health] == ["avg_bytes", "late_events", "dead_letters"]


def test_the_prompt_runs_statements_until_quit(output):
    proc = query(
        output=output,
        stdin="select count(*) as n\nfrom dead_letters;\nselec;\n.tables\n.quit\n",
    )
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert f"│ {len(read_rows(output, 'dead_letters'))} " in out
    assert "click_user_sessions" in out  # .tables
    assert "Parser Error" in proc.stderr.decode()  # and the prompt went on


def test_tables_on_gcs(gcs, tmp_path):
    dump = tmp_path / "dump"
    generate(dump, events=1_500, rate=20, partitions=2, jitter_ms=20_000, seed=4)
    output = "gs://clickstream/out"
    run_main(
        dataflows.clickstream.build(Settings(source="replay", replay_path=dump, output=output))
    )
    rows = _csv(
        query(
            "--format",
            "csv",
            "select count(*) as n, sum(pages) as pages from pages_per_min",
            output=output,
            STORAGE_EMULATOR_HOST=gcs.url,
        )
    )
    want = read_rows(output, "pages_per_min")
    assert want
    assert rows == [{"n": str(len(want)), "pages": str(sum(r[3] for r in want))}]
