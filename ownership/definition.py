"""A recovery store belongs to one dataflow definition.

Window state saved under one definition (window, key, watermark delay, filter,
having, the set of tables) means something else under another: resuming would mix
two definitions in one table. So the first run writes the definition next to the
store (`<recovery dir>/definition-<flow>.json`) and every resume compares: any
difference is refused with one line naming what changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

from config import ConfigError


def _committed(recovery: Path) -> bool:
    """Whether the store holds a committed epoch (a run can resume from it)."""
    for part in recovery.glob("*.sqlite3"):
        try:
            with contextlib.closing(sqlite3.connect(part)) as db:
                if db.execute("SELECT count(*) FROM commits").fetchone()[0]:
                    return True
        except sqlite3.Error:
            continue
    return False


def changes(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """What differs between two definitions, one phrase per table."""
    found = [f"table {t} was added" for t in sorted(now.keys() - saved.keys())]
    found += [f"table {t} was removed" for t in sorted(saved.keys() - now.keys())]
    found += [
        f"{t}: {saved[t]} -> {now[t]}"
        for t in sorted(saved.keys() & now.keys())
        if saved[t] != now[t]
    ]
    return found


def check_definition(recovery: Path, flow: str, definition: dict[str, str]) -> None:
    """Refuse (`ConfigError`) to resume a store written by another definition of `flow`;
    record the definition on a store that has nothing to resume yet."""
    path = recovery / f"definition-{flow}.json"
    if path.exists() and _committed(recovery):
        saved = json.loads(path.read_text())
        differences = changes(saved, definition)
        if differences:
            raise ConfigError(
                f"dataflow {flow} changed since the recovery store {recovery} was written "
                f"({'; '.join(differences)}): resuming would mix two definitions in one "
                "table; to start fresh, move the recovery directory and the output away"
            )
        return
    # Nothing to resume yet, or a store written before definitions were recorded:
    # this definition is the store's from now on.
    hidden = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    hidden.write_text(json.dumps(definition, indent=1, sort_keys=True))
    hidden.replace(path)
