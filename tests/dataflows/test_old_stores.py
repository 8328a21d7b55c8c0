"""Recovery stores written by an earlier version still resume, to the exact tables.

`tests/data/stores-2026-12-01.tar.gz` holds what the version of 2026-12-01 (before
the saved states got names) left when it was killed with -9 a second into a replay,
for each table dataflow: its recovery store (with the SQLite WAL of the killed
process), its output so far, and the replay dump (4,000 records on 2 partitions,
jitter beyond the delays, pauses). Made with:

    python -m bytewax.recovery FLOW/recovery 4
    CLICKSTREAM_SOURCE=replay:dump CLICKSTREAM_OUTPUT=FLOW/output CLICKSTREAM_BATCH_SIZE=1 \\
      CLICKSTREAM_FLUSH_INTERVAL=0.3 CLICKSTREAM_TEST_SLOW_WRITES=0.3 \\
      python -m bytewax.run dataflows.FLOW:flow -r FLOW/recovery -s 1 -b 0
    # kill -9 once an epoch >= 1 is committed; the lease files removed

When a change makes these fail to load, the change broke every user's store: keep
the old layout readable rather than replacing the archive.

Sessions are emitted one gap later since 2026-12-07 (docs/semantics.md): the sessions
that version had emitted before the kill stand, and on this dump's records, out of
order by more than the delay, some of them are split where today's answer has one. So
`click_user_sessions` keeps those rows and counts every event once, in a session or
late, and every other table is exact.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pytest

from tests.processes import bytewax_run, clean_env, run_flow
from tests.tables import read_rows

ARCHIVE = Path(__file__).resolve().parents[1] / "data" / "stores-2026-12-01.tar.gz"
TABLES = {
    "clickstream": ["pages_per_min", "errors_per_min_alert", "late_events", "dead_letters"],
    "user_clickstream": ["click_user_sessions", "user_ip_activity", "late_events", "dead_letters"],
}


@pytest.mark.parametrize("flow", ["clickstream", "user_clickstream"])
def test_a_store_written_by_the_earlier_version_resumes_to_the_exact_tables(tmp_path, flow):
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(tmp_path, filter="data")
    dump, store, output = tmp_path / "dump", tmp_path / flow / "recovery", tmp_path / flow
    before = sum(len(read_rows(output / "output", t)) for t in TABLES[flow])
    assert before, "the archive holds the output written before the kill"
    written_before = Counter(read_rows(output / "output", "click_user_sessions"))

    # asked for 2 parts, the resume reads the file as the one part the store saved
    resumed = bytewax_run(
        f"dataflows.{flow}:flow",
        clean_env(
            CLICKSTREAM_SOURCE=f"replay:{dump}",
            CLICKSTREAM_OUTPUT=str(output / "output"),
            CLICKSTREAM_REPLAY_PARTS="2",
        ),
        store,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(replay): resuming at line" in resumed.stderr

    reference = run_flow(
        {"CLICKSTREAM_SOURCE": f"replay:{dump}", "CLICKSTREAM_OUTPUT": str(tmp_path / "ref")}, flow
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    for table in TABLES[flow]:
        got = Counter(read_rows(output / "output", table))
        want = Counter(read_rows(tmp_path / "ref", table))
        if table == "click_user_sessions":
            assert not written_before - got, "a session emitted before the kill is gone"
            assert _events(got) == _events(want), "sessions count each event once"
            continue
        assert got == want, (
            f"{table}: {len(want - got)} missing, {len(got - want)} extra of {sum(want.values())}"
        )
    assert read_rows(tmp_path / "ref", TABLES[flow][0]), "the reference has rows"


def _events(sessions: Counter) -> Counter:
    """Events per user in these session rows (username, start, end, events)."""
    out: Counter = Counter()
    for (user, _start, _end, events), n in sessions.items():
        out[user] += events * n
    return out
