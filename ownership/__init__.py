"""One writer per dataflow: who may write a recovery store and an output, and since when.

Under `python -m bytewax.run`, every process of a dataflow takes, before it touches
the recovery store or the output, a lease (`ownership.lease`) on its share of both:

- `<recovery dir>/.lease-<flow>-process-<i>.json` (its versions `.v<n>`), and
- `<output>/_leases/<flow>/process-<i>.json` (local disk, versions `.v<n>` too, or GCS
  with generation preconditions),

where `i` is its process id (`-i`). Each process holds its own share because each
writes on its own: a share is checked by the process that writes under it, with
no message between processes, and a cluster restarted with fewer processes takes
over (and releases) the shares of the ones it no longer has, so a zombie of any of
them is fenced too. Process 0 exists in every cluster, so a second instance of a
dataflow always meets a held share and stops (`claim`).

While running, `fence()` is called before every write: each output file, Delta
commit and snapshot (`fence_until()` before each Kafka record). It returns the
fencing token the writer puts into what it commits (flush file names, the Delta
`txn`, a Kafka header), and stops the process with one line once the lease was
taken over. See `ownership.lease` for why that holds for a process that was paused.

A takeover from a holder that did not release its lease (killed, or paused and
presumed dead) also gives a single process's recovery store new files
(`rotate_store`): a zombie keeps writing to the old, unlinked ones, which nobody
reads. Tokens grow across all shares (`_newest_token`), so the newest holder of any
share outranks every earlier writer of any output partition.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from config import Settings
from ownership.definition import check_definition
from ownership.lease import GcsPlace, Lease, LeaseHeld, LeaseLost, LocalPlace, Place
from ownership.store import drop_unfinished_snapshots
from process import RunArgs, on_stop, run_args, stop
from setting import ConfigError
from storage.location import is_local, output_fs
from storage.retries import StorageFailure, StorageRetry

__all__ = ["check_definition", "claim", "fence", "fence_until"]

log = logging.getLogger(__name__)

_LEASE: tuple[str, Lease] | None = None  # (flow, lease) of this process


def _places(settings: Settings, flow: str, run: RunArgs, process: int) -> list[Place]:
    places: list[Place] = []
    if run.recovery is not None:
        places.append(LocalPlace(f"{run.recovery}/.lease-{flow}-process-{process}.json"))
    fs, root = output_fs(settings.output)
    path = f"{root}/_leases/{flow}/process-{process}.json"
    places.append(LocalPlace(path) if is_local(fs) else GcsPlace(fs, path))
    return places


def _shares(settings: Settings, flow: str, run: RunArgs) -> set[int]:
    """The process ids that ever held a share of this dataflow's leases."""
    retrying = StorageRetry(flow, settings.storage_retry_s)
    found: set[int] = set()
    name = re.compile(r"process-(\d+)\.json(\.v\d+)?$")  # local leases: one file per version
    if run.recovery is not None:
        paths = [p.name for p in run.recovery.glob(f".lease-{flow}-*")]
        found |= {int(m.group(1)) for p in paths if (m := name.search(p))}
    fs, root = output_fs(settings.output)
    base = f"{root}/_leases/{flow}"
    if retrying(lambda: fs.exists(base), f"list {base}"):
        paths = retrying(lambda: fs.ls(base, detail=False, refresh=True), f"list {base}")
        found |= {int(m.group(1)) for p in paths if (m := name.search(p))}
    return found


def _lease(settings: Settings, flow: str, run: RunArgs, process: int) -> Lease:
    places = _places(settings, flow, run, process)
    return Lease(places, settings.lease_timeout_s, StorageRetry(flow, settings.storage_retry_s))


def claim(
    settings: Settings,
    flow: str,
    definition: dict[str, str],
    earlier: Mapping[str, str] | None = None,
) -> None:
    """Take this process's lease on the recovery store and the output, and check that
    the store was written by this same dataflow definition (or, per table, the `earlier`
    spelling of the same meaning). A `ConfigError` (one line, exit 2, nothing changed)
    when another live process holds it or the dataflow changed. Does nothing outside
    `python -m bytewax.run`."""
    run = run_args()
    if run is None:
        return
    try:
        _claim(settings, flow, definition, earlier or {}, run)
    except StorageFailure as ex:
        raise ConfigError(f"dataflow {flow}: cannot take its lease: {ex}") from None


def _newest_token(settings: Settings, flow: str, run: RunArgs, shares: set[int]) -> int:
    """The greatest token any of this dataflow's lease `shares` holds.

    A new holder's token is above it: an output partition may have been written under
    another share in an earlier run (a cluster rescaled, or its processes renumbered),
    and a writer compares its token with the one committed last (the Delta owner
    `txn`), so tokens must grow across shares, not only within one."""
    retrying = StorageRetry(flow, settings.storage_retry_s)
    tokens = [0]
    for process in shares:
        for place in _places(settings, flow, run, process):
            holder, _ = retrying(place.read, f"read the lease {place.where}")
            if holder is not None:
                tokens.append(holder.token)
    return max(tokens)


def _claim(
    settings: Settings,
    flow: str,
    definition: dict[str, str],
    earlier: Mapping[str, str],
    run: RunArgs,
) -> None:
    global _LEASE
    shares = _shares(settings, flow, run)
    above = _newest_token(settings, flow, run, shares)
    if run.process == 0:
        # Shares of processes this run does not have: a zombie of an earlier, bigger
        # cluster may hold one. Take each over and give it up at once: fenced.
        for stale in sorted(shares - set(range(run.processes))):
            old = _lease(settings, flow, run, stale)
            try:
                old.acquire(above)
            except LeaseHeld as ex:
                raise ConfigError(_held_message(flow, ex)) from None
            old.release()
    lease = _lease(settings, flow, run, run.process)
    try:
        token = lease.acquire(above)
    except LeaseHeld as ex:
        raise ConfigError(_held_message(flow, ex)) from None
    atexit.register(lease.release)
    if run.recovery is not None:
        check_definition(run.recovery, flow, definition, earlier)
        try:
            dropped, epoch = drop_unfinished_snapshots(run.recovery)
        except sqlite3.Error as ex:  # resuming with such snapshots could write twice
            stop(f"recovery store {run.recovery}: cannot drop unfinished snapshots: {ex}", 1)
        if dropped:
            log.info(
                "recovery store %s: dropped %d snapshots of epoch %s on, which the last run "
                "did not finish on every worker",
                run.recovery,
                dropped,
                epoch,
            )
        # Only a single process may swap the files: cluster processes share the store
        # (on one host, or a shared volume), and a peer that already opened the old
        # files would go on writing to unlinked ones.
        if lease.took_over and run.processes == 1:
            rotate_store(run.recovery)
    log.info(
        "dataflow %s process %d: holds its lease (token %d, timeout %.0f s)",
        flow,
        run.process,
        token,
        settings.lease_timeout_s,
    )
    lease.start_renewing(on_lost=lambda message: stop(_lost_message(flow, message)))
    on_stop(lease.release)
    _LEASE = flow, lease


def _held_message(flow: str, ex: LeaseHeld) -> str:
    return (
        f"dataflow {flow} is already running: {ex}; stop that one first (a holder that died "
        "on another host frees it when it expires)"
    )


def _lost_message(flow: str, message: str) -> str:
    return (
        f"dataflow {flow}: this process lost its lease ({message}); another instance took "
        "over, so this one stops without writing anything more"
    )


def fence() -> int:
    """Before a write: the fencing token, once sure this process still holds its lease.

    Stops the process with one line when the lease was taken over. 0 when the
    dataflow runs outside `python -m bytewax.run` (no lease to hold)."""
    return fence_until(0.0)[0]


def fence_until(lasting_s: float) -> tuple[int, float]:
    """`fence()` for writes that may land up to `lasting_s` after they start: the token,
    and the `time.monotonic()` before which such a write may start. Past it, call again.

    A Kafka record is such a write: librdkafka may send it until `message.timeout.ms`
    after it was queued, from its own threads, even after a pause that cost this
    process its lease. Started before the returned time, it lands or expires while no
    other process can have taken over (`sinks.kafka`).

    ```python
    token, send_by = fence_until(2.5)
    if time.monotonic() >= send_by:
        token, send_by = fence_until(2.5)
    ```
    """
    if _LEASE is None:
        return 0, math.inf
    flow, lease = _LEASE
    try:
        token = lease.check(lasting_s)
    except LeaseLost as ex:
        stop(_lost_message(flow, str(ex)))
    return token, lease.valid_until - lasting_s


def rotate_store(recovery: Path) -> None:
    """Give every SQLite file of the recovery store a new inode with the same content.

    A process that still has the old files open (a paused zombie) goes on writing to
    them, but they are unlinked: nothing it writes reaches the store this run uses."""
    for part in sorted(recovery.glob("*.sqlite3")):
        fresh = part.with_name(f".{part.name}.rotating")
        fresh.unlink(missing_ok=True)
        with (
            contextlib.closing(sqlite3.connect(part)) as old,
            contextlib.closing(sqlite3.connect(fresh)) as new,
        ):
            old.backup(new)
            new.execute("PRAGMA journal_mode=WAL")
        for suffix in ("-wal", "-shm"):
            Path(f"{part}{suffix}").unlink(missing_ok=True)
        os.replace(fresh, part)
    log.info("recovery store %s: new files after a takeover (the old ones are unlinked)", recovery)
