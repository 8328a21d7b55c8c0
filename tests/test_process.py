"""This process: its id in a cluster, read as `python -m bytewax.run` reads it, and
stopping it with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import process
from process import RunArgs, process_id, run_args
from tests.processes import ROOT


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


def test_a_second_sigterm_while_the_clean_up_hangs_ends_the_process():
    """A clean-up stuck on storage that does not answer (giving the lease up during an
    outage) must not keep a process told twice to stop: `just chaos` found one alive 26
    minutes after it, its second SIGTERM waiting on the first one's lock."""
    code = (
        "import threading, time, process\n"
        "process.on_stop(lambda: threading.Event().wait())  # hangs\n"
        "process.on_sigterm('flow')\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the handler is in the hanging clean-up now
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_thelistening_ports_of_this_host_are_read_without_connecting():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert port not in (process.listening_ports() or set())
        server.listen()
        assert port in (process.listening_ports() or set())
    assert process._local_port(f"127.0.0.1:{port}") == port
    assert process._local_port(f"localhost:{port}") == port
    # TEST-NET-1: an address of no host here (nothing is sent: a bind is refused at once)
    assert process._local_port("192.0.2.1:4000") is None
    assert process._local_port("no-port") is None


def test_a_process_waits_until_the_lower_ones_listen(monkeypatch):
    """Bytewax's networking sleeps a whole second after a refused connection: process 1
    waits until process 0 listens before Bytewax connects."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        addresses = tuple(f"127.0.0.1:{s.getsockname()[1]}" for s in (first, second))
        monkeypatch.setattr(process, "run_args", lambda: RunArgs(None, 1, 2, addresses))
        listening = threading.Event()

        def listen_later() -> None:
            time.sleep(0.3)
            listening.set()
            first.listen()

        thread = threading.Thread(target=listen_later)
        thread.start()
        process.await_lower_processes(timeout_s=60)
        assert listening.is_set()
        thread.join()


def test_process_0_and_runs_outside_bytewax_run_do_not_wait(monkeypatch):
    def never() -> set[int]:
        raise AssertionError("looked for listening processes")

    monkeypatch.setattr(process, "listening_ports", never)
    monkeypatch.setattr(process, "run_args", lambda: None)
    process.await_lower_processes(timeout_s=60)
    # process 0 has no lower process to connect to
    monkeypatch.setattr(process, "run_args", lambda: RunArgs(None, 0, 2, ("127.0.0.1:1",) * 2))
    process.await_lower_processes(timeout_s=60)


def test_a_poisoned_exchange_queue_is_the_lost_peer_line_not_a_traceback():
    # CI saw the loss of a peer surface first as a worker's RuntimeError
    script = (
        "import process\n"
        "process.one_line_panics('clickstream')\n"
        "raise RuntimeError('(src/run.rs:292:17) panicked at bytes_exchange.rs:55:48:\\n"
        "MergeQueue poisoned.')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: dataflow clickstream: lost its connection"), line

    other = script.replace("MergeQueue poisoned.", "something else")
    done = subprocess.run(
        [sys.executable, "-c", other], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" in done.stderr, "any other error keeps its traceback"


@pytest.mark.parametrize("kept", [True, False])
def test_a_cluster_worker_keeps_its_python_thread_state(tmp_path, monkeypatch, kept):
    """A worker of `-w 2` runs on a thread Rust started; our sink keeps its Python thread
    state, so state a step keeps per thread lasts from batch to batch (without it, as the
    control shows, every call found a new thread state)."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource, cluster_main

    import sinks.base
    from sinks.parquet import ParquetSink
    from storage.tables import DEAD_LETTERS

    if not kept:
        monkeypatch.setattr(sinks.base, "keep_thread_state", lambda: None)
    per_thread = threading.local()
    fresh: list[int] = []

    def see(item: int) -> tuple[str, None]:
        if not getattr(per_thread, "seen", False):
            per_thread.seen = True
            fresh.append(threading.get_ident())
        return "0", None  # a tick for sink partition 0: writes nothing

    flow = Dataflow("threads")
    items = op.input("in", flow, TestingSource(range(200), batch_size=1))
    sink = ParquetSink(str(tmp_path), "threads", [DEAD_LETTERS], parts=1)
    op.output("out", op.map("see", op.redistribute("spread", items), see), sink)
    cluster_main(flow, addresses=[], proc_id=0, worker_count_per_proc=2)
    if kept:
        assert len(fresh) <= 2  # once for each worker thread
    else:
        assert len(fresh) > 100


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "bare (the control)"])
def test_a_sink_failing_as_it_closes_stops_with_its_reason_not_a_panic(guarded):
    """Bytewax turns an exception from a sink's close() into a Rust panic; when a second
    partition's close() raises too, the process aborts and the reason is lost (as
    `enrich`'s four did). `stop_on_error` says it in one line instead."""
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "tests.data.closing_sink_flow:flow"],
        cwd=ROOT,
        env={**os.environ, "GUARDED": "1" if guarded else "", "RUST_BACKTRACE": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    reason = "producing to T failed: Local: Message timed out"
    if guarded:
        assert proc.returncode == 1, proc.stderr  # the run's failure, not a setting's
        assert proc.stderr.splitlines() == [f"error: sink p: closing: {reason}"], proc.stderr
    else:  # why the guard is there
        assert proc.returncode != 0 and "panic" in proc.stderr, proc.stderr
        assert reason not in proc.stderr, proc.stderr
