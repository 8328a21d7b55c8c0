"""Exactly once across crashes for tables of every aggregate: their partial states
(sums, (sum, count) pairs, sets of distinct values, HLL sketches) go through snapshots
and resumes on other worker counts, and the tables equal an uninterrupted run's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sql import load_tables
from tests.dataflows.test_recovery import crash_and_resume
from tests.processes import FINISH_FAST, SLOW_RUN, clean_env
from tests.tables import assert_same_rows, read_rows, reference_run

TABLES = Path(__file__).parent / "tables"


def _exact(row: tuple) -> tuple:
    """A row without its doubles: sums and moments of doubles may differ in their last
    bits with the order batches were combined in (`assert_same_rows` compares those)."""
    return tuple(v for v in row if not isinstance(v, float))


@pytest.mark.slow
def test_kill_9_and_resume_is_exactly_once_for_every_aggregate(paced_dump, tmp_path):
    tables = [t.name for t in load_tables(TABLES) if t.stream == "clickstream"]
    assert len(tables) == 7  # the date functions and the 60 s / 25 s window among them
    reference = tmp_path / "reference"
    reference_run(paced_dump, reference, CLICKSTREAM_TABLES=str(TABLES))
    out = tmp_path / "out"
    env = clean_env(
        CLICKSTREAM_SOURCE=f"replay:{paced_dump}",
        CLICKSTREAM_OUTPUT=str(out),
        CLICKSTREAM_TABLES=str(TABLES),
        **SLOW_RUN,
    )
    story = crash_and_resume(
        env, tmp_path / "recovery", tmp_path / "run.log", kills=3, seed=4, finish_env=FINISH_FAST
    )
    assert len(story) == 3
    for table in [*tables, "late_events", "dead_letters"]:
        got, want = read_rows(out, table), read_rows(reference, table)
        twice = {r: n for r, n in Counter(map(_exact, got)).items() if n > 1}
        assert not twice, f"{table}: duplicated rows"
        assert_same_rows(got, want, table)
    assert read_rows(reference, "late_events"), "the dump should have late events"
