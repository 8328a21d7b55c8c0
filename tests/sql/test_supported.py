"""docs/sql.md's tables of aggregates and functions are the ones the compiler takes its
constructs by (`python -m sql.supported` prints them), and every row compiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from sql import STREAMS
from sql.compiler import AGGREGATES
from sql.scalars import FUNCTIONS, SCALARS
from sql.supported import (
    AGGREGATES_MARK,
    END_MARK,
    FUNCTIONS_MARK,
    aggregates_table,
    functions_table,
)
from sql.table import compile_table

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sql.md"


@pytest.mark.parametrize(
    ("mark", "table"), [(AGGREGATES_MARK, aggregates_table), (FUNCTIONS_MARK, functions_table)]
)
def test_the_docs_tables_are_printed_from_the_compilers_rows(mark, table):
    text = DOCS.read_text()
    assert mark in text, f"docs/sql.md has no {mark}"
    block = text.split(mark + "\n")[1].split("\n" + END_MARK)[0]
    assert block == table(), "run `python -m sql.supported` and paste its tables"


def test_the_compiler_takes_the_functions_of_the_rows_only():
    assert set(FUNCTIONS) == {node for row in SCALARS for node in row.nodes}


# one use of each aggregate row, in the spelling the docs give
AGGREGATE_USES = [
    "count(*)",
    "count(bytes)",
    "sum(bytes)",
    "avg(bytes)",
    "min(bytes) + max(bytes)",
    "count(DISTINCT ip)",
    "approx_count_distinct(ip)",
    "percentile_approx(bytes, 0.5)",
    "count_if(status > 400)",
    "stddev(bytes) + var_pop(bytes)",
    "concat(max_by(ip, bytes), min_by(ip, bytes))",
]


def test_every_aggregate_row_compiles():
    assert len(AGGREGATE_USES) == len(AGGREGATES)
    for use in AGGREGATE_USES:
        sql = (
            f"SELECT userid, window.start AS s, {use} AS v FROM clickstream "
            "WATERMARK timestamp DELAY OF INTERVAL 1 MINUTE "
            "GROUP BY window(timestamp, '1 minute'), userid"
        )
        compile_table(sql, "t", STREAMS, 4)
