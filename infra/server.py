"""What the local servers (the Kafka broker, the Schema Registry, Alertmanager, Prometheus)
share: a process known by its PID that can be asked whether it lives and stopped, the wait
for one just started to answer, and the `up` / `down` / `env` command line of each."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar


def reap(pid: int) -> None:
    """Collect a child that exited, so it stops being a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# Ports `free_port` handed out, one file each naming the process that asked for it: a
# port stays taken while that process lives, even while its server is down.
PORTS = Path(tempfile.gettempdir()) / "clickstream-ports"


def free_port() -> int:
    """A port free now, for a server started a little later, and held for the process
    that asks for it as long as that process lives.

    Held: a server restarted on its ports (a broker coming back, in a fault test or the
    chaos run) found its controller port taken by another test worker's server, started
    while it was down, and ran on without a controller. So a port another live process
    was given is never handed out again, though nothing listens on it at the moment.

    Taken below the ephemeral range: a port the kernel picked (bind to 0) may meanwhile
    become the local end of some client's outgoing connection, and the server's bind
    then fails (`Address already in use`), as it did for the broker under two pytest
    workers. Outgoing connections never take ports below the range."""
    high = max(2048, _ephemeral_low() - 1)
    pick = random.Random()  # its own seed: every test process picks differently
    me = f"{os.getpid()} {started_ticks(os.getpid())}"
    PORTS.mkdir(exist_ok=True)
    with open(PORTS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one check-and-hold at a time on this machine
        for _ in range(200):
            port = pick.randint(max(1024, high - 12_000), high)
            if _held(PORTS / str(port)):
                continue
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            (PORTS / str(port)).write_text(me)
            return port
    raise OSError(f"no free port below {high + 1}")


def _held(hold: Path) -> bool:
    """Whether the process named in a port's hold file still lives."""
    try:
        pid, started = hold.read_text().split()
        return str(started_ticks(int(pid))) == started
    except (OSError, ValueError):
        return False


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out as the local end of outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def started_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, field 22 of /proc/PID/stat), or
    None when there is none: with the PID it names one process, where a PID alone may
    name a later one that was given the same number."""
    stat = _stat(pid)
    return int(stat[_STARTTIME]) if stat else None


_STATE, _STARTTIME = 0, 19  # fields 3 and 22 of /proc/PID/stat, in `_stat`'s list


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
        if stat is None or stat[_STATE] == "Z":  # a zombie child still has its /proc entry
            return False
        return self.started in (0, int(stat[_STARTTIME]))

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
