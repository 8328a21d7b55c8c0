"""`python -m deploy.entrypoint`: a StatefulSet pod's facts as `bytewax.run` flags, one
line and exit 2 for a bad fact, the recovery store made once by process 0 and waited
for by the others, and a run through it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import Launch
from deploy.entrypoint import READY, command
from setting import ConfigError
from tests.processes import ROOT, clean_env
from tests.tables import read_rows
from tools.replay_gen import generate


def test_a_statefulset_pod_is_its_ordinals_process_with_the_services_addresses():
    env = {"HOSTNAME": "clickstream-2", "CLICKSTREAM_REPLICAS": "3", "CLICKSTREAM_WORKERS": "2"}
    launch = Launch.from_env(env, ["clickstream"])
    args = command(launch)
    assert args[1:] == [
        "-m",
        "bytewax.run",
        "dataflows.clickstream:flow",
        "-w",
        "2",
        "-i",
        "2",
        "-a",
        "clickstream-0.clickstream:9999;clickstream-1.clickstream:9999;"
        "clickstream-2.clickstream:9999",
    ]
    served = Launch.from_env(
        {**env, "CLICKSTREAM_SERVICE": "clicks", "CLICKSTREAM_CLUSTER_PORT": "7000"},
        ["clickstream"],
    )
    assert served.addresses()[0] == "clickstream-0.clicks:7000"


def test_alone_is_a_plain_run_and_a_store_adds_recovery():
    launch = Launch.from_env(
        {"CLICKSTREAM_DATAFLOW": "enrich", "CLICKSTREAM_RECOVERY_DIR": "/data/recovery"}
    )
    assert command(launch)[3:] == [
        "dataflows.enrich:flow",
        "-w",
        "1",
        "-r",
        "/data/recovery",
        "-s",
        "10",
        "-b",
        "0",
    ]


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "CLICKSTREAM_DATAFLOW: unset; one of clickstream, user_clickstream, enrich, tables"),
        (
            {"CLICKSTREAM_DATAFLOW": "clickstream", "CLICKSTREAM_REPLICAS": "3", "HOSTNAME": "web"},
            "HOSTNAME: web is not a StatefulSet pod's name",
        ),
        (
            {
                "CLICKSTREAM_DATAFLOW": "clickstream",
                "CLICKSTREAM_REPLICAS": "2",
                "HOSTNAME": "clickstream-2",
            },
            "HOSTNAME: clickstream-2 is pod 2, but CLICKSTREAM_REPLICAS is 2",
        ),
        (
            {
                "CLICKSTREAM_DATAFLOW": "clickstream",
                "CLICKSTREAM_REPLICAS": "2",
                "HOSTNAME": "clickstream-0",
                "CLICKSTREAM_RECOVERY_PARTITIONS": "1",
            },
            "CLICKSTREAM_RECOVERY_PARTITIONS: 1 is fewer than the 2 workers",
        ),
        (
            {"CLICKSTREAM_DATAFLOW": "clickstream", "CLICKSTREAM_REPLICAS": "x"},
            "expected an integer",
        ),
    ],
)
def test_a_bad_fact_is_one_line_and_exit_2(env, said):
    done = subprocess.run(
        [sys.executable, "-m", "deploy.entrypoint", "--print"],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and said in line, line
    with pytest.raises(ConfigError):
        Launch.from_env(env)


def test_process_0_makes_the_store_once_and_the_others_wait_for_it(tmp_path):
    store = tmp_path / "recovery"
    facts = {
        "CLICKSTREAM_DATAFLOW": "clickstream",
        "CLICKSTREAM_REPLICAS": "2",
        "CLICKSTREAM_RECOVERY_DIR": str(store),
        "CLICKSTREAM_RECOVERY_PARTITIONS": "4",
    }
    # ensure_store alone: the command that follows is not run
    code = (
        "import os; from config import Launch; from deploy.entrypoint import ensure_store; "
        "ensure_store(Launch.from_env(os.environ))"
    )

    def start(pod: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=clean_env(**facts, HOSTNAME=pod)
        )

    waiting = start("clickstream-1")
    time.sleep(1.0)
    assert waiting.poll() is None, "process 1 must wait for the store"
    assert start("clickstream-0").wait(timeout=60) == 0
    assert waiting.wait(timeout=60) == 0
    assert len(list(store.glob("part-*.sqlite3"))) == 4 and (store / READY).exists()
    made = {p.name: p.stat().st_mtime_ns for p in store.glob("part-*.sqlite3")}
    assert start("clickstream-0").wait(timeout=60) == 0  # a restart keeps the store
    assert {p.name: p.stat().st_mtime_ns for p in store.glob("part-*.sqlite3")} == made


def test_a_run_through_the_entrypoint_computes_the_tables(tmp_path):
    generate(tmp_path / "dump", events=2_000, rate=20, seed=3)
    done = subprocess.run(
        [sys.executable, "-m", "deploy.entrypoint", "clickstream"],
        cwd=ROOT,
        env=clean_env(
            CLICKSTREAM_SOURCE=f"replay:{tmp_path / 'dump'}",
            CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
            CLICKSTREAM_RECOVERY_DIR=str(tmp_path / "recovery"),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_rows(tmp_path / "out", "pages_per_min")
    assert (Path(tmp_path / "recovery") / READY).exists()


def test_every_pod_serves_health_on_the_one_port_its_probes_name():
    from deploy.entrypoint import environment

    for pod in range(3):
        env = {"HOSTNAME": f"clickstream-{pod}", "CLICKSTREAM_REPLICAS": "3"}
        launch = Launch.from_env(env, ["clickstream"])
        given = environment(launch, {**env, "CLICKSTREAM_METRICS_PORT": "9100"})
        # the process adds its id (`monitoring.server.serve`)
        assert int(given["CLICKSTREAM_METRICS_PORT"]) + pod == 9100
