"""A local server's state file names one process: a PID given to another process after
the server died is not taken for the server (`just demo-kafka` once printed a dead
registry's port because its PID lived on as some other process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra.monitoring import Server
from infra.server import free_port, started_ticks

ROOT = Path(__file__).resolve().parents[2]


def test_a_pid_given_to_another_process_is_not_the_server():
    started = started_ticks(os.getpid())
    assert started is not None
    assert Server("/x", os.getpid(), 1, started).alive()
    assert not Server("/x", os.getpid(), 1, started + 1).alive()
    assert Server("/x", os.getpid(), 1).alive()  # a state file that did not say when


def test_an_exited_or_zombie_process_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", ""])
    started = started_ticks(proc.pid)
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        pass  # exited, not yet reaped
    assert not Server("/x", proc.pid, 1, started or 0).alive()
    proc.wait()
    assert not Server("/x", proc.pid, 1, started or 0).alive()
    assert started_ticks(proc.pid) is None


def test_env_says_none_runs_when_the_state_files_pid_is_another_process(tmp_path):
    """The command line users and scripts call: this test's own PID stands for the PID
    a dead Alertmanager's was given to."""
    (tmp_path / "alertmanager.json").write_text(
        json.dumps({"workdir": str(tmp_path), "pid": os.getpid(), "port": 1, "started": 1})
    )
    proc = subprocess.run(
        [sys.executable, "-m", "infra.monitoring", "env", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith("error: no "), proc.stderr


class _Offers:
    """`random.Random` for `free_port` that offers the given ports in turn."""

    ports: list[int] = []

    def randint(self, _low: int, _high: int) -> int:
        return self.ports.pop(0)


def test_a_port_given_to_a_live_process_is_not_given_again_until_it_ends(monkeypatch):
    """A broker down for a restart listens on nothing, yet its ports stay its own."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from infra.server import free_port; "
            "print(free_port(), flush=True); sys.stdin.read()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    held = int(holder.stdout.readline())
    other = free_port()
    monkeypatch.setattr("infra.server.random.Random", _Offers)
    _Offers.ports = [held, *range(other + 1, other + 50)]
    assert free_port() != held  # nothing listens on it, but its process lives
    holder.stdin.close()
    holder.wait()
    _Offers.ports = [held]
    assert free_port() == held  # its process ended: free again
