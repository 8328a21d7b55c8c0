"""Tables a user adds as SQL (tests/sql/tables: every aggregate, each window kind, WHERE
and HAVING of every kind) equal what Spark 4.0.1 computes from the same SQL on the same
events (scripts/spark_sql_tables.py; Spark also accepts each as a streaming query)."""

from __future__ import annotations

import math
from pathlib import Path

from sql import load_tables
from tests.tables import assert_same_rows, read_rows, replay_in_both_formats, spark_rows
from tools.replay_gen import generate

TABLES = Path(__file__).parent / "tables"
APPROX = {"ips_approx": "ips"}  # approx_count_distinct column -> its exact count column


def test_user_tables_equal_spark_on_the_same_sql(spark_python, tmp_path):
    dump = tmp_path / "dump"
    # jitter under every delay: no record is late, so Spark's batch answer is the stream's;
    # pauses longer than the session gap close every session now and then
    generate(
        dump,
        events=6_000,
        rate=40,
        partitions=3,
        jitter_ms=5_000,
        seed=11,
        pause_every=400,
        pause_ms=45_000,
    )
    replay_in_both_formats(dump, tmp_path, tables=str(TABLES))
    spark = spark_rows(spark_python, TABLES, dump, tmp_path / "spark")
    tables = load_tables(TABLES)
    assert len(tables) == 8
    for table in tables:
        names = [c for c, _ in table.table.columns]
        keep = [i for i, c in enumerate(names) if c not in APPROX]
        theirs = [tuple(row[i] for i in keep) for row in spark[table.name]]
        assert len(theirs) > 20, f"{table.name}: too few rows to tell"
        for table_format in ("parquet", "delta"):
            ours = read_rows(tmp_path / table_format, table.name)
            assert_same_rows(
                [tuple(r[i] for i in keep) for r in ours], theirs, (table.name, table_format)
            )
            for approx, exact in APPROX.items():
                if approx in names:
                    a, e = names.index(approx), names.index(exact)
                    # HLL at lg_k 12: 1.6% standard error; 3 sigma is 4.9%
                    for r in ours:
                        assert math.isclose(r[a], r[e], rel_tol=0.049, abs_tol=1), r
