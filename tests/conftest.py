"""Shared fixtures. `entry_point` runs a flow on one worker and on a two-worker cluster,
as Bytewax's own tests do, so every flow is checked both ways."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

from infra import kafka_broker, monitoring, schema_registry
from infra.gcs_emulator import GcsEmulator
from tests.processes import ROOT, kill_all, mark_suite, wait_left_behind
from tests.shared import built_once, paced_clicks, shared_broker, shared_registry
from tests.tables import reference_run
from tests.webhook import Webhook

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
mark_suite()

# A test is marked by the real components its fixtures start, so `-m "not kafka"` selects
# exactly the tests that start no broker (`just test-fast` leaves out all of these).
MARK_OF_FIXTURE = {
    "kafka_bootstrap": "kafka",
    "own_broker": "kafka",
    "acl_broker": "kafka",
    "registry": "kafka",
    "own_registry": "kafka",
    "gcs": "gcs",
    "browser": "browser",
    "spark_python": "spark",
    "alertmanager": "monitoring",
}
# What a test-fast run must never start: a test that does is missing its fixture's mark.
# Matched as the start of the program's name: the emulator's binary is
# `fake-gcs-server-linux-amd64`, Debian's browser `chromium` or `chromium-browser`,
# Debian's Alertmanager `prometheus-alertmanager`.
COMPONENTS = ("java", "fake-gcs-server", "chromium", "chromedriver", "prometheus", "promtool")
# A test that takes a fixture through `request.getfixturevalue` is not seen by the
# marking above: such tests name the component in a parameter with its mark instead,
# e.g. `pytest.param("gcs", marks=pytest.mark.gcs)`.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name in MARK_OF_FIXTURE:
                item.add_marker(MARK_OF_FIXTURE[name])
    # the chaos run (minutes, on one worker) first, so the other workers run the rest
    # meanwhile: collected last, it ran alone at the end and the suite took 17 minutes
    items.sort(key=lambda item: not item.nodeid.startswith("tests/tools/test_chaos.py"))


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("TEST_FAST") == "1":
        _refuse_components()


def component_of(args: Any) -> str | None:
    """The program a `Popen` call starts, if it is one of `COMPONENTS`."""
    argv = [args] if isinstance(args, str | os.PathLike) else list(args)
    program = Path(str(argv[0]).split()[0]).name if argv else ""
    return program if program.startswith(COMPONENTS) else None


def _refuse_components() -> None:
    """In `just test-fast`, starting a broker, emulator or browser fails the test at once."""
    popen_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        program = component_of(args)
        if program is not None:
            raise RuntimeError(
                f"test-fast: this test starts {program}; give it the fixture that marks it"
            )
        popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = guarded  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a broker, emulator or dataflow the suite started is still alive
    after every fixture has been torn down; then stop them, so nothing outlives it."""
    found = wait_left_behind()
    if not found:
        return
    lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in found)
    print(f"\nerror: the test suite left {len(found)} processes running:\n{lines}")
    kill_all(found)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


EntryPoint = Callable[[Dataflow], None]


def _cluster_two_workers(flow: Dataflow) -> None:
    cluster_main(flow, addresses=[], proc_id=0, worker_count_per_proc=2)


@pytest.fixture(params=["run_main", "cluster_main-2workers"])
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    return run_main if request.param == "run_main" else _cluster_two_workers


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka broker: $KAFKA_BOOTSTRAP_SERVERS if set, else one the repo starts,
    shared by the pytest-xdist workers (`tests.shared.shared_broker`).

    Never skipped: if the broker cannot start, every Kafka test fails with the reason.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with shared_broker(tmp_path_factory) as broker:
        yield broker.bootstrap


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[kafka_broker.Broker]:
    """A broker of this test's own, for tests that stop it or use its SASL/SSL listeners."""
    broker = kafka_broker.start(tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schema_registry.Registry]:
    """A real Schema Registry (Apicurio, on the Java of the lock), shared by the pytest-xdist
    workers. Never skipped: if it cannot start, every test that needs it fails."""
    with shared_registry(tmp_path_factory) as found:
        yield found


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[schema_registry.Registry]:
    """A registry of this test's own, for tests that stop it, or need credentials."""
    found = schema_registry.start(tmp_path / "registry", users={"SR-KEY": "SR-SECRET"})
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[monitoring.Server, Webhook]]:
    """A real Alertmanager (Debian's package) that sends every notification, resolved ones
    too, to a webhook the test serves. Never skipped: if it cannot start, the test fails."""
    with Webhook() as hook:
        server = monitoring.start_alertmanager(
            tmp_path / "alertmanager", monitoring.alertmanager_config(hook.url)
        )
        try:
            yield server, hook
        finally:
            server.stop()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses."""
    return f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")


@pytest.fixture
def gcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsEmulator]:
    """fake-gcs-server with a bucket `clickstream`; STORAGE_EMULATOR_HOST points at it,
    STORAGE_EMULATOR_XML_HOST at its XML proxy (for deltalake)."""
    emulator = GcsEmulator(tmp_path / "gcs" / "root")
    emulator.create_bucket("clickstream")
    emulator.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.setenv("STORAGE_EMULATOR_XML_HOST", emulator.xml_url)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def paced_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A replay dump (300,000 clicks on 3 partitions, late events and pauses) that a run
    with `SLOW_RUN` settings takes about half a minute to get through."""
    build = partial(paced_clicks, events=300_000, seed=5)
    return built_once(tmp_path_factory, "paced_dump", build)


@pytest.fixture(scope="session")
def paced_reference(paced_dump: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clickstream tables of `paced_dump` by one uninterrupted run."""
    return built_once(tmp_path_factory, "paced_reference", partial(reference_run, paced_dump))


@pytest.fixture
def spark_python() -> Path:
    """The Python of Spark's own venv (scripts/setup_spark.sh makes it; `just test` runs it)."""
    python = ROOT / ".cache" / "spark" / "venv" / "bin" / "python"
    assert python.exists(), "run scripts/setup_spark.sh (`just test` does)"
    return python
