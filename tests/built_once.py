"""Inputs and references that many tests read, built once per test run and shared by
the pytest-xdist workers (each worker has its own session fixtures, so a session
fixture alone would build them once per worker)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """A directory `build` fills once per test run, shared by every pytest-xdist worker
    (the first to ask builds it, the others wait for it). What it holds is read, never
    changed, by the tests."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's directory, above each worker's own
    shared = base / "built-once"
    shared.mkdir(exist_ok=True)
    path, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)  # a build that failed half-way
            path.mkdir()
            build(path)
            done.touch()
    return path


def paced_clicks(out: Path, events: int, seed: int) -> None:
    """A replay dump of `events` clicks on 3 partitions at 300 a second, with late events
    (jitter beyond the 60 s delay now and then) and a 90 s pause every 20,000 records."""
    from tools.replay_gen import generate

    generate(
        out,
        events=events,
        rate=300,
        partitions=3,
        jitter_ms=70_000,
        seed=seed,
        pause_every=20_000,
        pause_ms=90_000,
    )
