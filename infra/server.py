"""What the local servers (the Kafka broker, the Schema Registry, Alertmanager, Prometheus)
share: a process known by its PID that can be asked whether it lives and stopped, the wait
for one just started to answer, and the `up` / `down` / `env` command line of each."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar


def reap(pid: int) -> None:
    """Collect a child that exited, so it stops being a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def started_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, field 22 of /proc/PID/stat), or
    None when there is none: with the PID it names one process, where a PID alone may
    name a later one that was given the same number."""
    stat = _stat(pid)
    return int(stat[19]) if stat else None


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state first (field 3)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


class ServerProcess:
    """A server process, by `pid` and `started` (`started_ticks`, 0 when a state file of
    an older version did not say): fields of the dataclass that inherits this."""

    pid: int
    started: int

    def alive(self) -> bool:
        """The server runs: its PID lives, is not a zombie, and is still the same process.
        A state file outlives its server (a reboot, a kill -9), and its PID is soon given
        to another process: taken for the server, `env` printed a dead registry's port."""
        stat = _stat(self.pid)
        if stat is None or stat[0] == "Z":  # a zombie child still has its /proc entry
            return False
        return self.started in (0, int(stat[19]))

    def stop(self, timeout: float = 30.0, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with `kill`), then SIGKILL after `timeout`; waits for the end."""
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            reap(self.pid)
            time.sleep(0.1)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            while self.alive():
                reap(self.pid)
                time.sleep(0.1)


class _Server(Protocol):
    pid: int

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` of a server's log, for an error that says why it did not start."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until_ready(
    server: _Server,
    proc: subprocess.Popen,
    name: str,
    answers: Callable[[], bool],
    tail: Callable[[], str],
    error: type[Exception],
    timeout: float,
    every: float,
) -> None:
    """Ask `answers()` every `every` s until it is true. The process exiting first, or
    `timeout` passing (the server is stopped then), is `error` with the end of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise error(f"{name} exited with {proc.returncode}:\n{tail()}")
        if answers():
            return
        time.sleep(every)
    server.stop()
    raise error(f"{name} did not answer within {timeout:.0f} s:\n{tail()}")


def command_line(
    name: str,
    default_dir: Path,
    start: Callable[[Path], S],
    load: Callable[[Path], S | None],
    where: Callable[[S], str],
    exports: Callable[[S], str],
    error: type[Exception],
) -> None:
    """`python -m infra.X up|down|env [--dir DIR]`: start one (or find it running) and
    print the `export` lines to use it; stop it; or only print the lines."""
    parser = argparse.ArgumentParser(description=f"a local {name}")
    parser.add_argument("action", choices=["up", "down", "env"])
    parser.add_argument("--dir", type=Path, default=default_dir)
    args = parser.parse_args()
    existing = load(args.dir)
    if args.action == "down":
        if existing is not None and existing.alive():
            existing.stop()
            print(f"{name}: stopped pid {existing.pid}")
        else:
            print(f"{name}: none running")
        return
    if args.action == "up" and not (existing and existing.alive()):
        try:
            existing = start(args.dir)
        except error as ex:
            print(f"error: {ex}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"{name}: pid {existing.pid} on {where(existing)}", file=sys.stderr)
    if existing is None or not existing.alive():
        print(f"error: no {name} running; run `just {name.split()[-1]}-up`", file=sys.stderr)
        raise SystemExit(1)
    print(exports(existing))


@contextlib.contextmanager
def fetch_lock(directory: Path) -> Iterator[None]:
    """One fetch of a component at a time on this machine: a second caller (another
    test worker, another `just` recipe) waits, then finds it fetched."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
