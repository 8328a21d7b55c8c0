"""Hazards together, as production brings them: a process of a cluster dies while the
broker is down, and the cluster is restarted into the outage by a supervisor that acts as
the systemd unit does (`deploy/systemd`: restart on failure, not after exit status 2).
What the user sees is one line per failed start, and once the broker is back, the tables
of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from infra.kafka_broker import free_port
from kafka_client.settings import KafkaSettings
from tests.processes import (
    SLOW_RUN,
    clean_env,
    committed_epoch,
    error_lines,
    new_store,
    run_flow,
    start_flow,
)
from tests.tables import assert_same_tables
from tools.produce import create_topics, produce_dump

RESTART_S = 1.0  # the unit's RestartSec, shortened


class Supervisor:
    """A 2-process cluster kept running as systemd keeps a unit: when a process fails, the
    others are stopped and the cluster starts again, unless the failure was exit status 2
    (a bad setting). Counts the starts and the exit statuses it saw."""

    def __init__(self, env: dict[str, str], recovery: Path, log: Path) -> None:
        self.env, self.recovery, self.log = env, recovery, log
        self.procs: list[subprocess.Popen] = []
        self.statuses: list[int] = []
        self.starts = 0

    def start(self) -> None:
        self.procs = start_flow(self.env, "2 processes", self.log, recovery=self.recovery)
        self.starts += 1

    def tend(self) -> bool:
        """Restart a failed cluster; True once every process has ended well."""
        codes = [p.poll() for p in self.procs]
        if all(c == 0 for c in codes):
            return True
        failed = [c for c in codes if c not in (None, 0)]
        if not failed:
            return False
        self.stop()
        self.statuses += [c for c in (p.returncode for p in self.procs) if c]
        assert 2 not in failed, self.log.read_text()[-3000:]  # the unit would give up
        time.sleep(RESTART_S)
        self.start()
        return False

    def run_until(self, what: str, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.tend()
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.mark.slow
def test_a_process_killed_while_the_broker_is_down_heals_when_it_is_back(
    own_broker, paced_dump, paced_reference, tmp_path, topic_name
):
    kafka = KafkaSettings(
        bootstrap_servers=own_broker.bootstrap, clickstream_topic=topic_name, stop_at_end=True
    )
    create_topics(kafka, {topic_name: {}}, 3)
    produce_dump(kafka, paced_dump / "clickstream.jsonl", topic_name)
    out, recovery, log = tmp_path / "out", new_store(tmp_path / "recovery"), tmp_path / "run.log"
    env = clean_env(CLICKSTREAM_SOURCE="kafka", **kafka.to_env(), CLICKSTREAM_OUTPUT=str(out))
    env.update(SLOW_RUN)
    cluster = Supervisor(env, recovery, log)
    cluster.start()
    try:
        cluster.run_until("a committed epoch", lambda: committed_epoch(recovery) >= 1, 120)
        own_broker.stop(kill=True)  # the broker dies
        os.kill(cluster.procs[1].pid, signal.SIGKILL)  # and, while it is down, a process
        # The supervisor restarts the cluster into the outage: each start says in one line
        # that the broker does not answer and asks to be started again (exit 75).
        cluster.run_until("a start into the outage to fail", lambda: 75 in cluster.statuses, 180)
        own_broker.restart()
        cluster.run_until("the end of the input", cluster.tend, 600)
    finally:
        cluster.stop()
    said = log.read_text()
    assert 75 in cluster.statuses, cluster.statuses
    refused = [line for line in error_lines(said) if "cannot reach Kafka" in line]
    assert refused, said[-3000:]
    assert_same_tables(out, paced_reference, ignore_topic=True)


@pytest.mark.slow  # the start waits 20 s for the broker
def test_a_start_while_the_broker_is_away_is_one_line_and_exit_75(tmp_path):
    # a port nothing listens on: the broker is away (or the address is wrong, which the
    # line says as well); 75 is EX_TEMPFAIL, which the systemd unit restarts
    port = free_port()
    settings = {
        "CLICKSTREAM_SOURCE": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "CLICKSTREAM_OUTPUT": str(tmp_path / "out"),
    }
    proc = run_flow(settings, timeout=120)
    assert proc.returncode == 75, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith(f"error: cannot reach Kafka at 127.0.0.1:{port}"), line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))
