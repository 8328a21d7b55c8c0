"""Two processes on localhost give the same tables as one worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infra.server import free_port
from kafka_client.settings import KafkaSettings
from tests.processes import ROOT, clean_env
from tests.tables import expected_tables, read_rows
from tools.produce import produce_replay
from tools.replay_gen import generate


@pytest.mark.parametrize("table_format", ["parquet", "delta"])
@pytest.mark.parametrize("flow", ["clickstream", "user_clickstream"])
def test_two_processes_equal_one_worker(flow, tmp_path, table_format):
    dump = tmp_path / "dump"
    generate(
        dump,
        events=8_000,
        rate=40,
        partitions=2,
        jitter_ms=20_000,
        seed=17,
        pause_every=3_000,
        pause_ms=100_000,
    )
    clean = clean_env()
    env = {
        **clean,
        "CLICKSTREAM_SOURCE": f"replay:{dump}",
        "CLICKSTREAM_OUTPUT": str(tmp_path),
        "CLICKSTREAM_TABLE_FORMAT": table_format,
    }
    _run_two_processes(flow, env)
    expected = expected_tables(dump)
    tables = (
        ["pages_per_min", "errors_per_min_alert"]
        if flow == "clickstream"
        else ["click_user_sessions", "user_ip_activity"]
    )
    for table in tables:
        got = read_rows(tmp_path, table)
        assert len(got) == len(set(got)) and set(got) == expected[table], table


@pytest.mark.parametrize("table_format", ["parquet", "delta"])
def test_two_processes_from_kafka_equal_the_replay(
    kafka_bootstrap, topic_name, tmp_path, table_format
):
    dump = tmp_path / "dump"
    generate(dump, events=6_000, rate=40, partitions=4, jitter_ms=20_000, seed=23)
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        clickstream_topic=f"{topic_name}-c",
        user_clickstream_topic=f"{topic_name}-u",
        stop_at_end=True,
    )
    produce_replay(kafka, dump, 4)
    env = clean_env(
        CLICKSTREAM_SOURCE="kafka",
        **kafka.to_env(),
        CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
        CLICKSTREAM_TABLE_FORMAT=table_format,
    )
    for flow in ("clickstream", "user_clickstream"):
        _run_two_processes(flow, env)
    for table, rows in expected_tables(dump).items():
        got = read_rows(tmp_path / "out", table)
        assert len(got) == len(set(got)) and set(got) == rows, table
        assert rows, table


def _run_two_processes(flow: str, env: dict[str, str]) -> None:
    """`bytewax.run FLOW -i 0/1 -w 2` as two processes on localhost, to the end."""
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bytewax.run",
                f"dataflows.{flow}:flow",
                "-i",
                str(i),
                "-a",
                addresses,
                "-w",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in (0, 1)
    ]
    # every process's end, not only the first that failed: when one dies, the other
    # only says it lost its peer, and the reason is in the dead one's log
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(
        f"--- process {i} (exit {p.returncode}):\n{err[-2000:]}"
        for i, (p, err) in enumerate(zip(procs, errs, strict=True))
    )
