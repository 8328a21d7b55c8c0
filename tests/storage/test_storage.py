"""The edges where we meet storage: a location we cannot write stops the run at start
with one line and writes nothing; an error that will not heal mid-run (a deleted
bucket, a path turned unwritable) stops it with one line within seconds; transient
errors are retried."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake.exceptions import DeltaError
from gcsfs.retry import HttpError

from storage.location import output_fs
from storage.retries import cause, is_transient
from tests.processes import ROOT, clean_env, run_flow
from tools.replay_gen import generate


class DefaultCredentialsError(Exception):
    """Named like google.auth's: no credentials found."""


@pytest.mark.parametrize(
    ("error", "transient", "says"),
    [
        (HttpError({"code": 503, "message": "backend"}), True, "HTTP 503"),
        (HttpError({"code": 429, "message": "slow down"}), True, "HTTP 429"),
        (ConnectionResetError(104, "Connection reset by peer"), True, "connection reset"),
        (TimeoutError("timed out"), True, "timed out"),
        (HttpError({"code": 401, "message": "Unauthorized"}), False, "HTTP 401"),
        (OSError("Forbidden: b/o\nno access"), False, "permission denied (403)"),
        (FileNotFoundError("b/o"), False, "not found (404: b/o)"),
        (ValueError("Bad Request: b/o\ninvalid"), False, "Bad Request"),
        (PermissionError(13, "Permission denied", "/x"), False, "permission denied"),
        (
            OSError("Read-only file system (os error 30): /o/x"),
            False,
            "permission denied (Read-only",
        ),
        (DefaultCredentialsError("none"), False, "no Google credentials"),
        (
            # a response cut off mid-body (the 2-minute chaos run's storage cut, in CI)
            DeltaError(
                "Generic DeltaTable error: Error interacting with object store: Generic GCS "
                "error: Error getting list response body: HTTP error: request or response "
                "body error"
            ),
            True,
            "request or response body error",
        ),
        (
            DeltaError(
                "Generic DeltaTable error: Error interacting with object store: Client error "
                "with status 403 Forbidden: no access"
            ),
            False,
            "403 Forbidden",
        ),
    ],
)
def test_retry_only_what_can_succeed(error, transient, says):
    assert is_transient(error) is transient
    assert says.lower() in cause(error).lower()


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_flow({"CLICKSTREAM_DATAGEN_COUNT": "100", **env}, timeout=60)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "panicked" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("/proc/forbidden", "cannot create the directory: no such file or directory"),
        ("{file}/out", "cannot create the directory: not a directory"),
    ],
)
def test_a_local_output_we_cannot_write_is_one_line_at_start(tmp_path, output, message):
    regular = tmp_path / "a-file"
    regular.write_text("keep")
    output = output.format(file=regular)
    proc = _run({"CLICKSTREAM_OUTPUT": output})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: CLICKSTREAM_OUTPUT {output}: {message}: {output}"
    assert regular.read_text() == "keep" and sorted(tmp_path.iterdir()) == [regular]


def test_a_bucket_that_does_not_exist_is_one_line_at_start(gcs):
    started = time.monotonic()
    proc = _run({"CLICKSTREAM_OUTPUT": "gs://nobucket/x", "STORAGE_EMULATOR_HOST": gcs.url})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: CLICKSTREAM_OUTPUT gs://nobucket/x: bucket nobucket does not exist"
    )
    assert time.monotonic() - started < 30
    fs, _ = output_fs("gs://clickstream/x")
    assert fs.find("clickstream") == []  # nothing written anywhere


def _live_run(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A replay that writes small files often and slowly, so it is mid-run for a while."""
    dump = tmp_path / "dump"
    generate(dump, events=60_000, rate=100, partitions=2, jitter_ms=10_000, seed=6)
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"],
            cwd=ROOT,
            env=clean_env(
                CLICKSTREAM_SOURCE=f"replay:{dump}",
                CLICKSTREAM_BATCH_SIZE="20",
                CLICKSTREAM_FLUSH_INTERVAL="0.2",
                CLICKSTREAM_TEST_SLOW_WRITES="0.5",
                **env,
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while "wrote" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    return proc, log


def test_a_bucket_deleted_mid_run_stops_it_with_one_line(gcs, tmp_path):
    output = "gs://clickstream/out"
    proc, log = _live_run(
        {"CLICKSTREAM_OUTPUT": output, "STORAGE_EMULATOR_HOST": gcs.url}, tmp_path
    )
    try:
        fs, _ = output_fs(output)
        fs.rm("clickstream", recursive=True)  # objects and the bucket
        deleted = time.monotonic()
        assert proc.wait(timeout=60) == 2
        assert time.monotonic() - deleted < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    line = _one_error_line(log.read_text())
    assert line.startswith(f"error: CLICKSTREAM_OUTPUT {output}: ") and "not found (404" in line


def test_an_output_turned_unwritable_mid_run_stops_it_with_one_line(tmp_path):
    # root ignores file modes: the table's directory becomes a regular file instead
    output = tmp_path / "out"
    proc, log = _live_run({"CLICKSTREAM_OUTPUT": str(output)}, tmp_path)
    try:
        for table in output.iterdir():
            subprocess.run(["rm", "-rf", str(table)], check=True)
            table.write_text("not a directory")
        assert proc.wait(timeout=60) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
    line = _one_error_line(log.read_text())
    assert line.startswith(f"error: CLICKSTREAM_OUTPUT {output}: write "), line


def test_write_permission_revoked_mid_run_stops_it_with_one_line(tmp_path):
    # root ignores file modes, but not a file system remounted read-only
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mnt)], check=True)
    output = mnt / "out"
    proc = None
    try:
        proc, log = _live_run({"CLICKSTREAM_OUTPUT": str(output)}, tmp_path)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        revoked = time.monotonic()
        assert proc.wait(timeout=60) == 2
        assert time.monotonic() - revoked < 30
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-l", str(mnt)], check=True)
    line = _one_error_line(log.read_text())
    assert line.startswith(f"error: CLICKSTREAM_OUTPUT {output}: write "), line
    assert line.endswith("permission denied (Read-only file system)"), line


@pytest.mark.slow  # gcsfs retries for about a minute before it gives up
def test_storage_that_does_not_answer_at_start_is_one_line_and_exit_75(gcs):
    gcs.stop()  # an outage: a supervisor starts the run again until it ends (75)
    env = {"CLICKSTREAM_OUTPUT": "gs://clickstream/x", "STORAGE_EMULATOR_HOST": gcs.url}
    proc = run_flow({"CLICKSTREAM_DATAGEN_COUNT": "100", **env}, timeout=300)
    assert proc.returncode == 75, proc.stderr[-2000:]
    line = _one_error_line(proc.stderr)  # after one warning per retry
    assert line.startswith("error: CLICKSTREAM_OUTPUT gs://clickstream/x: "), line
