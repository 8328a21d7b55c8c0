"""Running dataflows as `python -m bytewax.run` processes, as users do, and making sure
the suite leaves none of its processes behind."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from infra.cluster import local_cluster

ROOT = Path(__file__).resolve().parents[1]

# Every process the suite starts inherits this variable (clean_env keeps it), even
# one whose parent died: what still carries it at the end was left behind.
SUITE_MARK_VAR = "TEST_SUITE_RUN"
# The mark of the whole run (the controller's, under pytest-xdist): what the workers
# share (`tests.shared.shared_broker`) carries it and is checked once, at the very end.
RUN_MARK_VAR = "TEST_SUITE_RUN_ALL"

# Settings that make a run slow enough to be killed, paused or cut off mid-run many
# times: small batches, frequent flushes, slow file writes.
SLOW_RUN = {
    "CLICKSTREAM_BATCH_SIZE": "20",
    "CLICKSTREAM_FLUSH_INTERVAL": "0.3",
    "CLICKSTREAM_TEST_SLOW_WRITES": "0.15",
}
# The last run of a crash test, after its kills: the rest of the input at full speed.
FINISH_FAST = {"CLICKSTREAM_BATCH_SIZE": "2000", "CLICKSTREAM_TEST_SLOW_WRITES": "0"}


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any pipeline settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM", "KAFKA"))}
    return {**env, **settings}


def run_flow(
    settings: dict[str, str], flow: str = "clickstream", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m bytewax.run dataflows.FLOW:flow` with only `settings` for the pipeline,
    to the end; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:flow"],
        cwd=ROOT,
        env=clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_flow(
    env: dict[str, str],
    layout: str,
    log: Path,
    flow: str = "clickstream",
    recovery: Path | None = None,
) -> list[subprocess.Popen]:
    """Start `python -m bytewax.run dataflows.FLOW:flow` as "1 worker", "-w 2" or
    "2 processes" (on localhost), with the recovery store `recovery` (snapshots every
    second), its output appended to `log`."""
    base = [sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:flow"]
    if recovery is not None:
        base += ["-r", str(recovery), "-s", "1", "-b", "0"]
    out = log.open("a")
    if layout == "2 processes":
        return [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            for command in local_cluster(base, 2)
        ]
    flags = ["-w", "2"] if layout == "-w 2" else []
    return [subprocess.Popen(base + flags, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)]


def committed_epoch(recovery: Path) -> int:
    """The newest epoch a Bytewax recovery store has committed; -1 before the first."""
    newest = -1
    for part in recovery.glob("*.sqlite3"):
        with contextlib.closing(sqlite3.connect(part)) as db:
            (epoch,) = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
        newest = max(newest, -1 if epoch is None else epoch)
    return newest


def mark_suite() -> None:
    """Mark this process's environment, so its descendants can be found at the end. Each
    pytest-xdist worker (`just test-fast`) checks its own: a mark of its own."""
    os.environ.setdefault(SUITE_MARK_VAR, uuid.uuid4().hex)
    os.environ.setdefault(RUN_MARK_VAR, os.environ[SUITE_MARK_VAR])
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[SUITE_MARK_VAR] = uuid.uuid4().hex


def left_behind() -> list[tuple[int, str]]:
    """(pid, command line) of every live process other than this one that carries the mark."""
    mark = f"{SUITE_MARK_VAR}={os.environ[SUITE_MARK_VAR]}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found.append((int(entry.name), cmdline.strip()[:200]))
    return found


def wait_left_behind(grace_s: float = 5.0) -> list[tuple[int, str]]:
    """`left_behind()`, after giving processes that are stopping `grace_s` to go."""
    deadline = time.monotonic() + grace_s
    while (found := left_behind()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def kill_all(found: list[tuple[int, str]]) -> None:
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def new_store(path: Path) -> Path:
    """A new Bytewax recovery store of 4 partitions at `path`."""
    path.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(path), "4"], check=True)
    return path


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def bytewax_run(target: str, env: dict[str, str], recovery: Path) -> subprocess.CompletedProcess:
    """`python -m bytewax.run TARGET` with the recovery store `recovery`, to the end."""
    return subprocess.run(
        [sys.executable, "-m", "bytewax.run", target, "-r", str(recovery), "-s", "1", "-b", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(text: str) -> list[str]:
    """The `error:` lines of a process's output, which must hold no traceback or panic."""
    assert "Traceback" not in text and "panicked" not in text, text[-3000:]
    return [line for line in text.splitlines() if line.startswith("error:")]
