"""Read our output tables back, and compute the expected ones from a replay dump."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from bytewax.testing import run_main

import dataflows.clickstream
import dataflows.user_clickstream
from config import Settings
from tests.processes import ROOT, clean_env
from tests.reference import session_reference, sliding_reference
from tools.show import read_table

CLICKSTREAM_TABLES = ["pages_per_min", "errors_per_min_alert", "late_events", "dead_letters"]

S = 1_000
NO_LATENESS = 10**15


def read_rows(output: str | Path, table: str, version: int | None = None) -> list[tuple]:
    """All rows of a table (Parquet or Delta) as tuples, timestamps as epoch ms, dates as
    ISO strings; [] when it has no files."""
    df = read_table(str(output), table, version)
    if df is None:
        return []
    df = df.drop("event_date", "event_hour")
    return df.with_columns(
        pl.col(pl.Datetime).dt.epoch("ms"), pl.col(pl.Date).dt.strftime("%Y-%m-%d")
    ).rows()


def load_dump(path: Path) -> list[tuple[int, dict]]:
    """(ts, payload) per readable record of a kcat -J dump, in file order."""
    out = []
    for line in path.read_bytes().splitlines():
        env = orjson.loads(line)
        out.append((env["ts"], orjson.loads(env["payload"])))
    return out


def clickstream_tables(clicks: list[tuple[int, dict]]) -> dict[str, set[tuple]]:
    """pages_per_min and errors_per_min_alert of (ts, click) pairs never later than the
    delays."""
    pages, _ = sliding_reference(
        [(int(c["userid"]), ts) for ts, c in clicks if "html" in c["request"]],
        60 * S,
        5 * S,
        NO_LATENESS,
    )
    errors, _ = sliding_reference(
        [(int(c["status"]), ts) for ts, c in clicks if int(c["status"]) > 400],
        60 * S,
        20 * S,
        NO_LATENESS,
        lambda n: n > 5,
    )
    return {"pages_per_min": pages, "errors_per_min_alert": errors}


def expected_tables(replay_dir: Path) -> dict[str, set[tuple]]:
    """The four tables from a dump whose records are never later than the delays."""
    clicks = load_dump(replay_dir / "clickstream.jsonl")
    joined = load_dump(replay_dir / "user_clickstream.jsonl")
    sessions, _ = session_reference([(u["USERNAME"], ts) for ts, u in joined], 30 * S, NO_LATENESS)
    activity, _ = sliding_reference(
        [((u["USERNAME"], u["IP"], u["CITY"]), ts) for ts, u in joined],
        60 * S,
        60 * S,
        NO_LATENESS,
        lambda n: n > 1,
    )
    return {
        **clickstream_tables(clicks),
        "click_user_sessions": sessions,
        "user_ip_activity": {(*k, s, e, n) for k, s, e, n in activity},  # type: ignore[misc]
    }


def assert_same_tables(
    got_output: str | Path, want_output: str | Path, ignore_topic: bool = False
) -> None:
    def rows(output: str | Path, table: str) -> list[tuple]:
        out = read_rows(output, table)
        if ignore_topic and table == "late_events":  # the Kafka topic has a test-only name
            out = [(*r[:8], "", *r[9:]) for r in out]
        return out

    for table in CLICKSTREAM_TABLES:
        got = Counter(rows(got_output, table))
        want = Counter(rows(want_output, table))
        duplicates = {r: n for r, n in got.items() if n > 1}
        assert not duplicates, f"{table}: {len(duplicates)} duplicated rows"
        assert got == want, (
            f"{table}: {len(want - got)} missing, {len(got - want)} extra "
            f"of {sum(want.values())} rows"
        )
    assert read_rows(want_output, "pages_per_min"), "the reference should have rows"


def reference_run(dump: Path, out: Path, **env: str) -> None:
    """The clickstream tables of `dump`, by one uninterrupted run without recovery."""
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"],
        cwd=ROOT,
        env=clean_env(CLICKSTREAM_SOURCE=f"replay:{dump}", CLICKSTREAM_OUTPUT=str(out), **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def replay_in_both_formats(dump: Path, out: Path, **settings: Any) -> None:
    """Both table dataflows over a replay dump, into `out/parquet` and `out/delta`."""
    for table_format in ("parquet", "delta"):
        options = Settings(
            source="replay",
            replay_path=dump,
            output=str(out / table_format),
            table_format=table_format,
            **settings,
        )
        run_main(dataflows.clickstream.build(options))
        run_main(dataflows.user_clickstream.build(options))


def assert_same_rows(ours: list[tuple], theirs: list[tuple], what: object) -> None:
    """The same rows, floats compared with a relative tolerance: sums and moments of
    doubles differ in the last bits with the order of adding (rounding both sides would
    now and then split two equal values across a rounding boundary)."""

    def split(row: tuple) -> tuple[tuple, tuple]:
        exact = tuple(v for v in row if not isinstance(v, float))
        return exact, tuple(v for v in row if isinstance(v, float))

    def order(pair: tuple[tuple, tuple]) -> str:
        return repr(pair[0])  # keys may be null: None and ints do not compare

    mine, spark = sorted(map(split, ours), key=order), sorted(map(split, theirs), key=order)
    assert [k for k, _ in mine] == [k for k, _ in spark], (what, len(mine), len(spark))
    for (key, a), (_, b) in zip(mine, spark, strict=True):
        close = len(a) == len(b) and all(
            math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) for x, y in zip(a, b, strict=True)
        )
        assert close, (what, key, a, b)


def spark_rows(
    spark_python: Path, tables: Path, dump: Path, out: Path, streams_json: Path | None = None
) -> dict[str, list[tuple]]:
    """Spark's rows of each table of `tables` on the replay `dump` (scripts/spark_sql_tables.py
    with the Python of Spark's own venv; `streams_json`: declared streams), by table name."""
    import json
    import subprocess

    from tests.processes import ROOT, clean_env

    args = [str(spark_python), str(ROOT / "scripts" / "spark_sql_tables.py")]
    args += [str(tables), str(dump), str(out)]
    if streams_json is not None:
        args.append(str(streams_json))
    spark = subprocess.run(args, env=clean_env(), capture_output=True, text=True, timeout=900)
    assert spark.returncode == 0, spark.stdout + spark.stderr[-3000:]
    return {
        path.stem: [tuple(json.loads(line)) for line in path.read_text().splitlines()]
        for path in out.glob("*.jsonl")
    }
