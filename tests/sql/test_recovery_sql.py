"""Exactly once across crashes for tables of every aggregate: their partial states
(sums, (sum, count) pairs, sets of distinct values, HLL sketches) go through snapshots
and resumes on other worker counts, and the tables equal an uninterrupted run's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sql import load_tables
from tests.dataflows.test_recovery import crash_and_resume
from tests.processes import SLOW_RUN, clean_env
from tests.tables import read_rows, reference_run

TABLES = Path(__file__).parent / "tables"


def _rows(output: Path, table: str) -> Counter:
    # doubles to 9 decimals: a sum of doubles may differ in its last bits with the order
    # batches were combined in
    return Counter(
        tuple(round(v, 9) if isinstance(v, float) else v for v in row)
        for row in read_rows(output, table)
    )


@pytest.mark.slow
def test_kill_9_and_resume_is_exactly_once_for_every_aggregate(paced_dump, tmp_path):
    tables = [t.name for t in load_tables(TABLES) if t.stream == "clickstream"]
    assert len(tables) == 2
    reference = tmp_path / "reference"
    reference_run(paced_dump, reference, CLICKSTREAM_TABLES=str(TABLES))
    out = tmp_path / "out"
    env = clean_env(
        CLICKSTREAM_SOURCE=f"replay:{paced_dump}",
        CLICKSTREAM_OUTPUT=str(out),
        CLICKSTREAM_TABLES=str(TABLES),
        **SLOW_RUN,
    )
    story = crash_and_resume(env, tmp_path / "recovery", tmp_path / "run.log", kills=3, seed=4)
    assert len(story) == 3
    for table in [*tables, "late_events", "dead_letters"]:
        got, want = _rows(out, table), _rows(reference, table)
        assert not {r: n for r, n in got.items() if n > 1}, f"{table}: duplicated rows"
        assert got == want, f"{table}: {len(want - got)} missing, {len(got - want)} extra"
    assert _rows(reference, "late_events"), "the dump should have late events"
