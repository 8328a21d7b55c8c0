"""Hazards together, as production brings them: a process of a cluster dies while the
broker is down, and the cluster is restarted into the outage by the chaos runs' supervisor
(`tools.chaos.supervisor`: restart on failure, as a StatefulSet or the systemd unit does).
What the user sees is one line per failed start, and once the broker is back, the tables
of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from infra.server import free_port
from kafka_client.settings import KafkaSettings
from tests.processes import (
    SLOW_RUN,
    clean_env,
    committed_epoch,
    error_lines,
    new_store,
    run_flow,
)
from tests.tables import assert_same_tables
from tools.chaos.supervisor import Cluster
from tools.produce import create_topics, produce_dump


def run_until(cluster: Cluster, what: str, condition: Callable[[], bool], timeout: float) -> None:
    """Tend `cluster` (restart it when a process fails) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        cluster.tend()
        time.sleep(0.2)


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
    # kept running as a StatefulSet keeps its pods (a bad setting, exit 2, fails the test)
    cluster = Cluster("clickstream", env, recovery, log)
    cluster.start()
    try:
        run_until(cluster, "a committed epoch", lambda: committed_epoch(recovery) >= 1, 120)
        own_broker.stop(kill=True)  # the broker dies
        os.kill(cluster.procs[1].pid, signal.SIGKILL)  # and, while it is down, a process
        # The supervisor restarts the cluster into the outage: each start says in one line
        # that the broker does not answer and asks to be started again (exit 75).
        run_until(cluster, "a start into the outage to fail", lambda: 75 in cluster.statuses, 180)
        own_broker.restart()
        run_until(cluster, "the end of the input", cluster.tend, 600)
    finally:
        cluster.close()
    said = log.read_text()
    assert 75 in cluster.statuses, cluster.statuses
    refused = [line for line in error_lines(said) if "cannot reach Kafka" in line]
    assert refused, said[-3000:]
    assert_same_tables(out, paced_reference, ignore_topic=True)


@pytest.mark.slow
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
