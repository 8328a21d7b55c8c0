"""What the pytest-xdist workers of one test run share, where a session fixture alone
would make one per worker: inputs and references built once (`built_once`), and the
Kafka broker (`shared_broker`) and the Schema Registry (`shared_registry`)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from infra import kafka_broker, schema_registry
from tests.processes import RUN_MARK_VAR, SUITE_MARK_VAR


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's directory, above each worker's own
    shared = base / "built-once"
    shared.mkdir(exist_ok=True)
    return shared


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """A directory `build` fills once per test run, shared by every pytest-xdist worker
    (the first to ask builds it, the others wait for it). What it holds is read, never
    changed, by the tests."""
    shared = _shared_dir(tmp_path_factory)
    path, done = shared / name, shared / f"{name}.done"
    with _locked(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)  # a build that failed half-way
            path.mkdir()
            build(path)
            done.touch()
    return path


class _Component(Protocol):
    def alive(self) -> bool: ...

    def stop(self) -> None: ...


C = TypeVar("C", bound=_Component)


@contextmanager
def _shared_component(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    start: Callable[[Path], C],
    load: Callable[[Path], C | None],
) -> Iterator[C]:
    """One server for every worker of the run: the first worker that needs it starts it,
    the last one that used it stops it.

    It carries the run's mark, not the starting worker's: a worker that ends while
    another still uses it does not count it as left behind, and the run's own check at
    the very end still would."""
    shared = _shared_dir(tmp_path_factory)
    workdir, users = shared / name, shared / f"{name}.users"
    me = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with _locked(shared / f"{name}.lock"):
        found = load(workdir) if workdir.exists() else None
        if found is None or not found.alive():
            worker_mark = os.environ[SUITE_MARK_VAR]
            os.environ[SUITE_MARK_VAR] = os.environ[RUN_MARK_VAR]
            try:
                found = start(workdir)
            finally:
                os.environ[SUITE_MARK_VAR] = worker_mark
        names = set(users.read_text().split()) if users.exists() else set()
        users.write_text(" ".join(sorted(names | {me})))
    try:
        yield found
    finally:
        with _locked(shared / f"{name}.lock"):
            names = set(users.read_text().split()) - {me}
            users.write_text(" ".join(sorted(names)))
            if not names:
                found.stop()


def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> ContextManager[kafka_broker.Broker]:
    """The Kafka broker of the run (tests share it by topic names of their own)."""
    return _shared_component(tmp_path_factory, "kafka", kafka_broker.start, kafka_broker.load)


def shared_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> ContextManager[schema_registry.Registry]:
    """The Schema Registry of the run (tests share it by subjects of their own topics)."""
    return _shared_component(
        tmp_path_factory, "registry", schema_registry.start, schema_registry.load
    )


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
