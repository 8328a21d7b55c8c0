"""Snapshots of epochs a run did not finish on every worker (`ownership.store`).

A worker that is ahead writes its snapshots of an epoch the cluster never finishes (the
run dies while another worker is still in it). Bytewax 0.21 does not load them on the
next resume, but keeps them, and a later resume past that epoch loads one as the key's
latest state when no run snapshotted that key again at that epoch. Found by `just
chaos`: the enrich sink's partition that wrote nothing after a restart came back with
such a state, forgot what the crashed run had written, and wrote 22 records twice.

Here real Bytewax runs a keyed running sum with a recovery store; the ahead worker's
snapshot is the row it would have written. The control shows the stale state coming
back; `drop_unfinished_snapshots`, which every process runs before its dataflow starts
(`ownership.claim`), removes it.
"""

from __future__ import annotations

import contextlib
import pickle
import sqlite3
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from ownership.store import drop_unfinished_snapshots, resume_epoch, saved_keys

EOF, ABORT = TestingSource.EOF, TestingSource.ABORT


# Three runs: the first ends its input, the second dies (as a killed run does: no end of
# input, at which Bytewax would snapshot every key), the third resumes where the second
# last finished an epoch. Only the first and the last touch b.
def _input() -> list:
    return [("a", 1), ("b", 10), ("a", 1), EOF(), *[("a", 1)] * 4, ABORT(), ("b", 1), EOF()]


def _run(store: Path, source: list) -> list[tuple[str, int]]:
    """The sums one run wrote (a run that dies raises; its output is what it wrote)."""
    flow = Dataflow("sums")
    items = op.input("inp", flow, TestingSource(source))

    def add(total: int | None, item: int) -> tuple[int, int]:
        total = (total or 0) + item
        return total, total

    out: list[tuple[str, int]] = []
    op.output("out", op.stateful_map("sum", items, add), TestingSink(out))
    with contextlib.suppress(RuntimeError):  # the second run dies (ABORT)
        # every batch its own epoch
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(store)))
    return out


def _executions(store: Path) -> list[tuple[int, int]]:
    rows: list[tuple[int, int]] = []
    for part in store.glob("*.sqlite3"):
        with sqlite3.connect(part) as db:
            rows += db.execute("SELECT ex_num, resume_epoch FROM exs").fetchall()
    return sorted(rows)


def _step_of(store: Path, key: str) -> str:
    """The running sum's step id in the store (Bytewax names it after its inner steps)."""
    for part in store.glob("*.sqlite3"):
        with sqlite3.connect(part) as db:
            query = "SELECT step_id FROM snaps WHERE state_key = ? AND step_id LIKE 'sums.sum%'"
            for (step,) in db.execute(query, (key,)).fetchall():
                return str(step)
    raise AssertionError(f"no snapshot of {key}")


def _ahead_worker_writes(
    store: Path, key: str, epoch: int, state: int, as_key: str | None = None
) -> None:
    """The snapshot a worker ahead of the others writes of `epoch`, which the run never
    finishes: the key's row with that epoch and state (for `as_key`, a key no finished
    epoch saved)."""
    with sqlite3.connect(next(store.glob("*.sqlite3"))) as db:
        db.execute(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
            (_step_of(store, key), as_key or key, epoch, pickle.dumps(state)),
        )


@pytest.mark.parametrize("dropped", [True, False], ids=["dropped", "control"])
def test_a_snapshot_of_an_unfinished_epoch_never_comes_back(tmp_path, dropped):
    store = tmp_path / "recovery"
    store.mkdir()
    init_db_dir(store, 1)
    source = _input()  # the same items for every run (ABORT remembers it fired)
    assert resume_epoch(store) is None, "a store no run started from"
    assert _run(store, source) == [("a", 1), ("b", 10), ("a", 2)]

    epoch = resume_epoch(store)
    assert epoch is not None
    _ahead_worker_writes(store, "b", epoch, 999)
    _ahead_worker_writes(store, "a", epoch + 1, 999, as_key="c")
    # the keys a resume loads: not one only an unfinished epoch saved
    assert saved_keys(store, _step_of(store, "a")) == {"a", "b"}
    if dropped:
        assert drop_unfinished_snapshots(store) == (2, epoch)
    assert _run(store, source) == [("a", 3), ("a", 4), ("a", 5), ("a", 6)]
    # computed as Bytewax computes it: the epoch the second run recorded it resumed from
    assert _executions(store)[-1][1] == epoch
    assert (resume_epoch(store) or 0) > epoch, "the second run finished epochs before it died"

    # the third resumes past that epoch: b's state is the first run's, or the ahead
    # worker's row (a run that repeats some of a's epochs: Bytewax's at-least-once)
    third = _run(store, source)
    assert [total for key, total in third if key == "b"] == [11 if dropped else 1000]


def test_nothing_is_dropped_from_a_store_that_finished_every_epoch(tmp_path):
    store = tmp_path / "recovery"
    store.mkdir()
    init_db_dir(store, 2)
    source = _input()
    _run(store, source)
    epoch = resume_epoch(store)
    assert drop_unfinished_snapshots(store) == (0, epoch)
    assert _run(store, source) == [("a", 3), ("a", 4), ("a", 5), ("a", 6)]


def test_a_store_file_that_does_not_answer_is_an_error_not_a_skip(tmp_path):
    store = tmp_path / "recovery"
    store.mkdir()
    init_db_dir(store, 2)
    (store / "part-1.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        drop_unfinished_snapshots(store)
