"""The `just` recipes check their arguments: a wrong one prints usage, exit status 2, no
traceback, and nothing left behind (no recovery store)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT, clean_env

JUST = str(Path(sys.executable).with_name("just"))


def just(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JUST, *args], cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["run-recoverable", "nosuchflow"], "usage: just run-recoverable FLOW"),
        (["demo", "fast"], "usage: just demo [RATE] [COUNT]"),
        (["demo-kafka", "a-minute"], "usage: just demo-kafka [SECONDS] [RATE]"),
        (["query", "--format", "xml", "select 1"], "usage: python -m tools.query"),
        (["produce", "--rate", "fast"], "usage:"),
    ],
)
def test_a_wrong_argument_prints_usage(args, usage, tmp_path):
    proc = just(*args, CLICKSTREAM_RECOVERY_DIR=str(tmp_path / "recovery"))
    assert proc.returncode == 2, proc.stderr
    assert usage in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert "error: Recipe" not in proc.stderr  # no second line from just itself
    assert not (tmp_path / "recovery").exists()


def test_a_bad_setting_leaves_no_recovery_store(tmp_path):
    proc = just(
        "run-recoverable",
        "clickstream",
        CLICKSTREAM_OUTPUT="/proc/forbidden",
        CLICKSTREAM_RECOVERY_DIR=str(tmp_path / "recovery"),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: CLICKSTREAM_OUTPUT /proc/forbidden: cannot create the directory: "
        "no such file or directory: /proc/forbidden"
    ]
    assert not (tmp_path / "recovery").exists()
