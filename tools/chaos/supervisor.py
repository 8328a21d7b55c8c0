"""A 2-process Bytewax cluster kept running the way a Kubernetes StatefulSet keeps its
pods: when a process ends, the others are stopped and the cluster starts again after a
back-off that doubles while the starts keep failing, as CrashLoopBackOff does (its 10 s to
5 min, scaled down to a run of minutes). Every start, exit status and `error:` line is
kept for the verdict.

Process 1 reaches process 0 through a `Gate`, so the nemesis can cut the link between
them. An exit status 2 is a setting the run got wrong, which would crash-loop a
StatefulSet for good; the only ones a chaos run accepts are the lease's refusals (another
instance holds it, or took it over from a paused process), which end when that instance
stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.server import free_port
from process import listening_ports
from tools.chaos.gate import Gate

ROOT = Path(__file__).resolve().parents[2]
FIRST_BACKOFF_S = 1.0
LONGEST_BACKOFF_S = 16.0
# a start that ran this long before it failed begins the back-off again (Kubernetes: 10 min)
BACKOFF_RESET_S = 30.0
NICENESS = 10
LEASE_REFUSALS = ("is already running", "lost its lease")


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while port not in (listening_ports() or {port}) and proc.poll() is None:
        if time.monotonic() > deadline:
            return  # process 1 is started all the same; timely's own retries decide
        time.sleep(0.02)


def next_backoff(last_s: float, ran_s: float) -> float:
    """The wait before the next start: the first one after a start that ran well (or
    the first failure), else twice the last, up to the longest."""
    if ran_s >= BACKOFF_RESET_S or not last_s:
        return FIRST_BACKOFF_S
    return min(2 * last_s, LONGEST_BACKOFF_S)


class ChaosFailure(AssertionError):
    """The run found a bug: a check failed, or the product did what it must not."""


@dataclass
class Cluster:
    name: str  # the dataflow: dataflows.NAME:flow
    env: dict[str, str]
    recovery: Path
    log: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    gate: Gate | None = None
    starts: int = 0
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # `error:` lines of every start
    _mark: int = 0  # where the log of the current start begins
    _started: float = 0.0  # time.monotonic() of the current start
    _backoff: float = 0.0  # the last back-off; 0 before the first failure
    _due: float | None = None  # when the next start is due, while backing off

    def command(self) -> list[str]:
        # Niced: a Bytewax cluster process whose peer cannot finish an epoch (its sink
        # waits out a storage outage, it is paused or cut off) spins a core in Bytewax's
        # input operator (docs/known-limits.md). On this 2-core machine that starved the
        # broker and the emulators until their restarts failed; in production each
        # process has cores of its own.
        return [
            "nice",
            "-n",
            str(NICENESS),
            sys.executable,
            "-m",
            "bytewax.run",
            f"dataflows.{self.name}:flow",
            "-r",
            str(self.recovery),
            "-s",
            "1",
            "-b",
            "0",
        ]

    def start(self, **extra_env: str) -> None:
        own, peer = free_port(), free_port()
        if self.gate is not None:
            self.gate.close()
        self.gate = Gate(own)
        # process 1 connects to process 0 (timely connects to the lower processes), here
        # through the gate; process 0 listens where the gate forwards to
        addresses = [
            f"127.0.0.1:{own};127.0.0.1:{peer}",
            f"127.0.0.1:{self.gate.port};127.0.0.1:{peer}",
        ]
        self._due = None
        self._started = time.monotonic()
        self._mark = self.log.stat().st_size if self.log.exists() else 0
        out = self.log.open("a")
        out.write(f"=== {self.name}: start {self.starts + 1} at {time.time():.1f}\n")
        out.flush()
        env = {**self.env, **extra_env}
        self.procs = []
        for i in range(2):
            if i == 1:
                # process 1 would take the gate's answer for process 0's: start it once
                # process 0 listens, as it would find it without a gate in between
                _wait_listening(own, self.procs[0])
            self.procs.append(
                subprocess.Popen(
                    [*self.command(), "-i", str(i), "-a", addresses[i]],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        out.close()
        self.starts += 1

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def tend(self, **extra_env: str) -> bool:
        """Start a failed cluster again once its back-off has passed (this call never
        waits, so one loop tends every cluster); True once every process ended with 0."""
        if self._due is not None:
            if time.monotonic() >= self._due:
                self.start(**extra_env)
            return False
        codes = [p.poll() for p in self.procs]
        if codes and all(c == 0 for c in codes):
            return True
        if not any(c not in (None, 0) for c in codes):
            return False
        self.kill()
        self.statuses += [p.returncode for p in self.procs if p.returncode]
        said = self.started_log()
        lines = [line for line in said.splitlines() if line.startswith("error:")]
        self.errors += lines
        if 2 in codes and not any(r in line for line in lines for r in LEASE_REFUSALS):
            raise ChaosFailure(f"{self.name} exited 2 (a StatefulSet would crash-loop): {lines}")
        self._backoff = next_backoff(self._backoff, time.monotonic() - self._started)
        self._due = time.monotonic() + self._backoff
        return False

    def started_log(self) -> str:
        with self.log.open("rb") as f:
            f.seek(self._mark)
            return f.read().decode(errors="replace")

    def terminate(self, grace_s: float = 30.0) -> None:
        """Stop as `kubectl delete pod` does: SIGTERM, then SIGKILL after the grace."""
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)  # a paused process could not hear it
                p.terminate()
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def close(self) -> None:
        self.kill()
        if self.gate is not None:
            self.gate.close()
