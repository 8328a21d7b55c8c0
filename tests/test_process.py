"""This process: its id in a cluster, read as `python -m bytewax.run` reads it, and
stopping it with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from process import process_id, run_args


def test_process_id_is_read_like_bytewax_run(monkeypatch):
    monkeypatch.delenv("BYTEWAX_PROCESS_ID", raising=False)
    run = "/x/site-packages/bytewax/run.py"
    assert process_id([run, "dataflows.clickstream:flow", "-i", "3", "-a", "a:1;b:2"]) == 3
    assert (
        process_id([run, "dataflows.clickstream:flow", "--process-id", "2", "-a", "a:1;b:2;c:3"])
        == 2
    )
    assert process_id([run, "dataflows.clickstream:flow"]) == 0
    monkeypatch.setenv("BYTEWAX_PROCESS_ID", "1")
    assert process_id(["pytest"]) == 1
    run_of = run_args(
        [
            run,
            "dataflows.clickstream:flow",
            "-i",
            "1",
            "-a",
            "a:1;b:2",
            "-r",
            "rec",
            "-s",
            "1",
            "-b",
            "0",
        ]
    )
    assert run_of is not None and (run_of.process, run_of.processes) == (1, 2)
    assert str(run_of.recovery) == "rec"
    assert run_args(["pytest"]) is None


def test_threads_stopping_at_once_print_one_line():
    """The lease's renewal thread and a writer's fence may both find the lease lost."""
    code = (
        "import logging, threading, time, process\n"
        "logging.shutdown = lambda: time.sleep(1)  # a slow flush of the log handlers\n"
        "go = threading.Barrier(4)\n"
        "def run(i):\n"
        "    go.wait()\n"
        "    process.stop(f'stopped by thread {i}')\n"
        "for i in range(4):\n"
        "    threading.Thread(target=run, args=(i,)).start()\n"
        "time.sleep(10)\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: stopped by thread ")
