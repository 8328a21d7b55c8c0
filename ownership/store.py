"""What a recovery store holds, read before the dataflow runs (Bytewax's SQLite files,
`<recovery dir>/part-N.sqlite3`): whether it has a committed epoch to resume from, and
which state keys a step saved."""

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
    saved in a store a run can resume from; empty for a store with nothing committed."""
    if not recovery.is_dir() or not committed(recovery):
        return set()
    keys: set[str] = set()
    for part in recovery.glob("*.sqlite3"):
        try:
            with contextlib.closing(sqlite3.connect(part)) as db:
                query = "SELECT DISTINCT state_key FROM snaps WHERE step_id = ?"
                keys.update(key for (key,) in db.execute(query, (step_id,)))
        except sqlite3.Error:
            continue
    return keys
