"""A cluster whose processes run on separate hosts (network namespaces, `tests.hosts`),
under faults: a host's process is killed, a host is cut off the network, and the
cluster is rescaled. What the user sees is one line per process or a 503 on
`/health`, and after a restart the tables equal an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hosts import Hosts
from tests.processes import (
    ROOT,
    SLOW_RUN,
    clean_env,
    committed_epoch,
    error_lines,
    new_store,
    wait_for,
)
from tests.tables import assert_same_tables

PORT = 2101  # each host has its own network: every process can use the same ports
METRICS_PORT = 9300


def start_cluster(
    hosts: Hosts, processes: int, env: dict[str, str], recovery: Path, logs: Path
) -> list[subprocess.Popen]:
    """`python -m bytewax.run` as a cluster of `processes`, process i on host i."""
    addresses = ";".join(f"{hosts.address(i)}:{PORT}" for i in range(processes))
    logs.mkdir(exist_ok=True)
    return [
        hosts.popen(
            i,
            [
                *(sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"),
                *("-r", str(recovery), "-s", "1", "-b", "0", "-i", str(i), "-a", addresses),
            ],
            logs / f"process-{i}.log",
            cwd=ROOT,
            env=env,
        )
        for i in range(processes)
    ]


def health(hosts: Hosts, i: int) -> int:
    """The status `/health` answers on host i (0: no answer)."""
    return hosts.http_status(i, METRICS_PORT, "/health")


def kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()


def finish(procs: list[subprocess.Popen], logs: Path) -> None:
    for i, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (logs / f"process-{i}.log").read_text()[-3000:]


def _env(dump: Path, output: Path) -> dict[str, str]:
    return clean_env(
        CLICKSTREAM_SOURCE=f"replay:{dump}",
        CLICKSTREAM_OUTPUT=str(output),
        CLICKSTREAM_METRICS_PORT=str(METRICS_PORT),
        CLICKSTREAM_STALL_TIMEOUT="10",
        **SLOW_RUN,
    )


def _wait_for_an_epoch(recovery: Path) -> None:
    start = committed_epoch(recovery)
    wait_for("a committed epoch", lambda: committed_epoch(recovery) > start + 1, timeout=120)


@pytest.mark.slow
def test_a_killed_process_stops_the_others_with_one_line_each(
    tmp_path, paced_dump, paced_reference
):
    output, recovery = tmp_path / "out", new_store(tmp_path / "recovery")
    env = _env(paced_dump, output)
    with Hosts(3) as hosts:
        procs = start_cluster(hosts, 3, env, recovery, tmp_path / "run1")
        _wait_for_an_epoch(recovery)
        marks = [(tmp_path / "run1" / f"process-{i}.log").stat().st_size for i in range(3)]
        os.kill(procs[2].pid, signal.SIGKILL)
        try:
            for i in (0, 1):
                assert procs[i].wait(timeout=30) != 0
                said = (tmp_path / "run1" / f"process-{i}.log").read_text()[marks[i] :]
                (line,) = error_lines(said)
                assert "lost its connection to another process of the cluster" in line, line
        finally:
            kill(procs)
        finish(start_cluster(hosts, 3, env, recovery, tmp_path / "run2"), tmp_path / "run2")
    assert_same_tables(output, paced_reference)


@pytest.mark.slow
def test_a_host_cut_off_for_60_s_turns_health_503_and_a_restart_is_exact(
    tmp_path, paced_dump, paced_reference
):
    output, recovery = tmp_path / "out", new_store(tmp_path / "recovery")
    env = _env(paced_dump, output)
    with Hosts(2) as hosts:
        procs = start_cluster(hosts, 2, env, recovery, tmp_path / "run1")
        try:
            _wait_for_an_epoch(recovery)
            assert health(hosts, 0) == 200
            hosts.cut(1)
            cut_at = time.monotonic()
            # the stall timeout (10 s), plus the time /health takes to look again
            wait_for("/health on host 0 to turn 503", lambda: health(hosts, 0) == 503, 25)
            time.sleep(max(0.0, 60 - (time.monotonic() - cut_at)))
            assert health(hosts, 0) == 503
            hosts.mend(1)
        finally:
            kill(procs)
        finish(start_cluster(hosts, 2, env, recovery, tmp_path / "run2"), tmp_path / "run2")
    assert_same_tables(output, paced_reference)


@pytest.mark.slow
def test_rescaling_2_then_3_then_1_processes_equals_an_uninterrupted_run(
    tmp_path, paced_dump, paced_reference
):
    output, recovery = tmp_path / "out", new_store(tmp_path / "recovery")
    env = _env(paced_dump, output)
    with Hosts(3) as hosts:
        for run, processes in enumerate((2, 3)):
            procs = start_cluster(hosts, processes, env, recovery, tmp_path / f"run{run}")
            try:
                _wait_for_an_epoch(recovery)
                assert all(p.poll() is None for p in procs), "killed mid-input"
            finally:
                kill(procs)
        finish(start_cluster(hosts, 1, env, recovery, tmp_path / "run2"), tmp_path / "run2")
    log = (tmp_path / "run2" / "process-0.log").read_text()
    assert "process-2.json taken over" in log, "the last run fences the shares it lacks"
    assert_same_tables(output, paced_reference)
