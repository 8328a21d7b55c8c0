"""What a recovery store holds, read before the dataflow runs (Bytewax's SQLite files,
`<recovery dir>/part-N.sqlite3`): whether it has a committed epoch to resume from, which
state keys a step saved, the epoch a run resumes from, and the snapshots of unfinished
epochs, which are dropped before it does."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def committed(recovery: Path) -> bool:
    """Whether the store holds a committed epoch (a run can resume from it)."""
    for part in recovery.glob("*.sqlite3"):
        try:
            with contextlib.closing(sqlite3.connect(part)) as db:
                if db.execute("SELECT count(*) FROM commits").fetchone()[0]:
                    return True
        except sqlite3.Error:
            continue
    return False


def saved_keys(recovery: Path, step_id: str) -> set[str]:
    """The state keys (a source's partitions, a stateful step's keys) step `step_id`
    saved in a store a run can resume from; empty for a store with nothing committed.
    Only the keys a resume loads: snapshots of an unfinished epoch do not count (it runs
    before `drop_unfinished_snapshots`, as the dataflow is built)."""
    if not recovery.is_dir() or not committed(recovery):
        return set()
    try:
        epoch = resume_epoch(recovery)
    except sqlite3.Error:
        epoch = None  # the start stops on it with one line (`ownership.claim`)
    before = 2**62 if epoch is None else epoch
    keys: set[str] = set()
    for part in recovery.glob("*.sqlite3"):
        try:
            with contextlib.closing(sqlite3.connect(part)) as db:
                query = "SELECT DISTINCT state_key FROM snaps WHERE step_id = ? AND snap_epoch < ?"
                keys.update(key for (key,) in db.execute(query, (step_id, before)))
        except sqlite3.Error:
            continue
    return keys


def resume_epoch(recovery: Path) -> int | None:
    """The epoch Bytewax resumes the store from, computed as Bytewax 0.21 does
    (`RecoveryPart::resume_from`): the latest execution's workers' frontiers (a worker
    with none written: that execution's own resume epoch), the least of them. None for a
    store no execution has started from yet; `sqlite3.Error` for a file that does not
    answer."""
    executions: list[tuple[int, int, int]] = []
    fronts: list[tuple[int, int, int]] = []
    for part in recovery.glob("*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            executions += db.execute("SELECT ex_num, worker_count, resume_epoch FROM exs")
            fronts += db.execute("SELECT ex_num, worker_index, worker_frontier FROM fronts")
    if not executions:
        return None
    latest, workers, resumed_at = max(executions)
    progress = dict.fromkeys(range(workers), resumed_at)
    for ex, worker, frontier in fronts:
        if ex == latest:
            progress[worker] = max(progress.get(worker, frontier), frontier)
    return min(progress.values())


def drop_unfinished_snapshots(recovery: Path) -> tuple[int, int | None]:
    """Delete the snapshots of epochs at or after the store's resume epoch; returns how
    many, and that epoch.

    Such a snapshot was written by a worker that closed an epoch the whole cluster never
    finished (another worker was still in it when the run died: a sink waiting for Kafka,
    say). Bytewax does not load it on this resume, but leaves it in the store, and a later
    resume past that epoch loads it as the key's latest state if this run never snapshots
    that key again at that epoch: a sink partition that wrote nothing meanwhile, found by
    `just chaos` (22 records written twice by the enrich sink, docs/known-limits.md). Run
    before the dataflow starts, by every process of the cluster: no snapshot of this run
    is written before all of them have joined it."""
    epoch = resume_epoch(recovery)
    if epoch is None:
        return 0, None
    dropped = 0
    for part in sorted(recovery.glob("*.sqlite3")):
        with contextlib.closing(sqlite3.connect(part)) as db, db:
            dropped += db.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (epoch,)).rowcount
    return dropped, epoch
