"""This process: which one of a `python -m bytewax.run` cluster it is, and how it stops
with one line instead of a traceback. Imports nothing of ours but `setting`.

- `run_args()`: the flags `python -m bytewax.run` was given (recovery directory,
  process id, cluster size), read once here for the leases and the metrics port;
- `fail`, `stop`, `exit_on_config_error`, `one_line_panics`: one `error: ...` line on
  stderr and exit status 2, from the main thread or a worker thread;
- `on_sigterm`, `on_stop`: a clean stop when Kubernetes deletes a pod or systemd stops a
  unit, or when the cluster lost a process: the lease given up on the way out;
- `await_lower_processes`: a cluster on one host starts without timely's lost second;
- `keep_thread_state`: a worker thread of a cluster keeps its Python thread state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from setting import ConfigError


@dataclass(frozen=True)
class RunArgs:
    """What `python -m bytewax.run` was told about recovery and the cluster."""

    recovery: Path | None
    process: int
    processes: int
    addresses: tuple[str, ...] = ()  # `-a`, host:port of each process
    workers: int = 1  # `-w`, worker threads in each process


def run_args(argv: list[str] | None = None) -> RunArgs | None:
    """This process's `python -m bytewax.run` flags (`-r`, `-i`, `-a`, or their
    BYTEWAX_* variables and the Helm chart's pod name), or None when the dataflow runs
    any other way (`bytewax.testing`, a notebook): there is no run to guard then."""
    argv = sys.argv if argv is None else argv
    if not argv or not argv[0].replace("\\", "/").endswith("bytewax/run.py"):
        return None
    # Bytewax's own parser, so the flags mean here exactly what they mean to the run
    # (env fallbacks, the Helm chart's pod name and host file included).
    from bytewax.run import _parse_args

    given = sys.argv
    sys.argv = list(argv)
    try:
        args = _parse_args()
    finally:
        sys.argv = given
    addresses = [a for a in (args.addresses or "").split(";") if a.strip()]
    return RunArgs(
        args.recovery_directory,
        args.process_id or 0,
        max(1, len(addresses)),
        tuple(a.strip() for a in addresses),
        args.workers_per_process or 1,
    )


def process_id(argv: list[str] | None = None) -> int:
    """This process's id in its cluster: `-i` of `python -m bytewax.run`, else
    BYTEWAX_PROCESS_ID or the Helm chart's pod name, else 0."""
    run = run_args(argv)
    if run is not None:
        return run.process
    env = os.environ
    if env.get("BYTEWAX_PROCESS_ID", "").strip():
        return int(env["BYTEWAX_PROCESS_ID"])
    pod, statefulset = env.get("BYTEWAX_POD_NAME"), env.get("BYTEWAX_STATEFULSET_NAME")
    if pod and statefulset:
        return int(pod.replace(statefulset + "-", ""))
    return 0


def await_lower_processes(timeout_s: float = 10.0) -> None:
    """Wait until every lower process of this cluster that runs on this host listens.

    Bytewax's networking (timely's) connects each process to the lower ones and, when a
    connection is refused because that process has not started listening yet, sleeps a
    whole second before it tries again: most two-process runs on one host lost a second
    (measured: 4.0 s against 2.95 s wall for 956k records). Listening is looked up in
    /proc/net/tcp, without connecting (timely would take a probe for a peer). Processes on
    other hosts, or a host without /proc, are not waited for; after `timeout_s` the run
    goes on and timely retries as before."""
    run = run_args()
    if run is None or run.process == 0:
        return
    ports = [p for a in run.addresses[: run.process] if (p := _local_port(a)) is not None]
    deadline = time.monotonic() + timeout_s
    while ports and time.monotonic() < deadline:
        listening = listening_ports()
        if listening is None:
            return
        ports = [p for p in ports if p not in listening]
        if ports:
            time.sleep(0.005)


def _local_port(address: str) -> int | None:
    """The port of `host:port` when the host is an address of this machine."""
    host, _, port = address.rpartition(":")
    try:
        ip = socket.gethostbyname(host.strip("[]"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))  # only an address of this host can be bound
        return int(port)
    except (OSError, ValueError):
        return None


def listening_ports() -> set[int] | None:
    """The TCP ports something listens on in this network namespace (state 0A)."""
    found: set[int] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":
                        found.add(int(fields[1].rsplit(":", 1)[1], 16))
    except OSError:
        return None
    return found


_kept = threading.local()  # per Python thread state: gone with the state it was set in


def keep_thread_state() -> None:
    """Keep this thread's Python thread state until the process ends.

    A cluster (`-w`, `-i`/`-a`) runs its workers on threads Rust started. Each time such a
    thread takes the GIL, PyO3 makes a Python thread state, and deletes it when it lets
    go (PyO3 #2495): several times a batch, in every step. One more `PyGILState_Ensure`
    that is never released keeps the state, so the GIL is taken and given back as by a
    Python thread. Measured on 2 processes from Kafka, 956,000 records: 2.18 -> 2.02
    CPU-s (docs/performance.md). Call it from code Bytewax runs on every worker while it
    builds the dataflow (a sink's `list_parts`); the main thread keeps its own already.
    """
    if getattr(_kept, "state", False) or threading.current_thread() is threading.main_thread():
        return
    import ctypes  # only a cluster's worker threads need it

    ctypes.pythonapi.PyGILState_Ensure()
    _kept.state = True


def fail(message: str, status: int = 2) -> NoReturn:
    """Print a one-line error and exit with `status`, without a traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


_STOPPING = threading.Lock()


def stop(message: str, status: int = 2) -> NoReturn:
    """Stop the whole process with one line, from a worker thread, where raising would end
    in Bytewax's panic and traceback. The recovery store keeps the last committed epoch.
    Exit status 2 (the default) says a restart will not help without a change (a setting,
    a lost lease); 1, that it may.

    Several threads may stop at once (the lease's renewal thread and a writer's fence
    both find the lease lost): the first prints its line and exits, the others wait
    for that exit, so the user reads one line."""
    _STOPPING.acquire()  # never released: os._exit ends every thread
    print(f"error: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(status)


@contextmanager
def stop_on_error(what: str) -> Iterator[None]:
    """`stop` with `what` and the error's text when the block raises, exit status 1 (a
    restart may help: the failure is the run's, like an exception's, not a setting's).
    For a sink's `close()`: Bytewax turns an exception from it into a Rust panic in a
    destructor, which aborts the process with no reason given (`thread caused
    non-unwinding panic`)."""
    try:
        yield
    except Exception as ex:
        stop(f"{what}: {ex}", 1)


_CLEANUPS: list[Callable[[], None]] = []


def on_stop(cleanup: Callable[[], None]) -> None:
    """Run `cleanup` (give the lease up, so a successor on another host need not wait for
    it to expire) when this process ends early but in order: on SIGTERM (`on_sigterm`),
    or when its cluster lost another process (`one_line_panics`). Not in `stop`: a
    process stopped for losing its lease has nothing to give up."""
    _CLEANUPS.append(cleanup)


def _clean_up() -> None:
    for cleanup in _CLEANUPS:
        with contextlib.suppress(Exception):  # the process ends either way
            cleanup()


def on_sigterm(dataflow: str) -> None:
    """On SIGTERM (Kubernetes deleting a pod, `kubectl rollout restart`, `systemctl stop`):
    one warning line, the `on_stop` clean-ups, then death by SIGTERM as before (exit
    status 143). The recovery store resumes from its last committed epoch, as after a kill.

    Only from the main thread (Python's rule); Bytewax runs the handler there between
    its activations. Other threads that would stop the process meanwhile (`stop`) wait."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(_signum: int, _frame: object) -> None:
        if not _STOPPING.acquire(timeout=5.0):
            # Stopping already: another thread ends the process (it would have by now),
            # or this handler's own clean-up hangs (the storage does not answer) and the
            # process was told again: end now.
            _die_by_sigterm()
        # never released: the process ends here
        logging.getLogger(__name__).warning(
            "dataflow %s process %d: SIGTERM: stops, giving up its lease; a restart resumes "
            "from the last committed epoch",
            dataflow,
            process_id(),
        )
        _clean_up()
        logging.shutdown()
        _die_by_sigterm()

    signal.signal(signal.SIGTERM, handle)


def _die_by_sigterm() -> None:
    """End as SIGTERM ends a process that does not handle it (exit status 143)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def one_line_panics(dataflow: str) -> None:
    """Bytewax ends a process whose cluster lost another process with a Rust panic raised
    as a Python traceback (`PanicException: Send thread panic`); print one line instead,
    and end the process there (exit status 1)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: object) -> None:
        text = " ".join(str(value).split())[:200]
        # the same loss may come first as a RuntimeError of a worker whose exchange queue
        # the dead communication thread poisoned (seen in CI's StatefulSet test)
        poisoned = kind is RuntimeError and "MergeQueue poisoned" in str(value)
        if kind.__name__ != "PanicException" and not poisoned:
            previous(kind, value, tb)  # type: ignore[arg-type]
            return
        if poisoned or "Send thread panic" in text or "Recv thread panic" in text:
            what = (
                "lost its connection to another process of the cluster (stopped, killed or "
                "cut off); restart every process: they resume from the last committed epoch"
            )
        else:
            what = "Bytewax stopped the run"
        print(f"error: dataflow {dataflow}: {what} ({text})", file=sys.stderr, flush=True)
        # Bytewax's other threads may still print their own error of the same loss (seen
        # in CI: `RuntimeError: (src/run.rs:292:17) panicked at ... MergeQueue poisoned`),
        # a second line after this one: from here on stderr goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        _clean_up()
        logging.shutdown()
        os._exit(1)

    sys.excepthook = hook


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a `ConfigError` into `error: ...` on stderr and its exit status (2; 75 for a
    service that does not answer, `setting.Unreachable`)."""
    try:
        yield
    except ConfigError as ex:
        fail(str(ex), ex.exit_status)
