"""The lease itself, on local disk and on GCS (fake-gcs-server): one winner of a race,
takeover only when free, a fencing token that grows, and a paused holder that finds
out before it writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from config import Settings
from ownership import _lease, _newest_token, _shares
from ownership.lease import (
    GcsPlace,
    Holder,
    Lease,
    LeaseHeld,
    LeaseLost,
    LocalPlace,
    Place,
)
from process import RunArgs
from storage.location import output_fs
from tests.processes import ROOT


def _plain(action: Any, what: str) -> Any:
    return action()


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def place(request: pytest.FixtureRequest, tmp_path) -> Place:
    """A fresh lease place on local disk, or in the GCS emulator."""
    if request.param == "local":
        return LocalPlace(str(tmp_path / "leases" / "process-0.json"))
    request.getfixturevalue("gcs")
    fs, root = output_fs("gs://clickstream/out")
    return GcsPlace(fs, f"{root}/_leases/flow/process-0.json")


def _foreign(token: int, renewed_ago_s: float, timeout_s: float = 30.0, **kw: Any) -> Holder:
    """A holder on another host, last renewed `renewed_ago_s` ago."""
    now = time.time()
    return Holder(
        token, "other-host", "other-boot", 4242, 1, now - 100, now - renewed_ago_s, timeout_s, **kw
    )


def test_a_swap_against_a_stale_version_is_refused(place):
    holder, version = place.read()
    assert holder is None
    first = place.swap(_foreign(1, 0), version)
    assert first is not None
    assert place.swap(_foreign(2, 0), version) is None, "a stale version must not win"
    now, version = place.read()
    assert (now.token if now else None, version) == (1, first)
    assert place.swap(_foreign(2, 0), first) is not None


def test_of_two_racing_processes_exactly_one_takes_the_lease(place):
    _, version = place.read()
    results: list[int | None] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        results.append(place.swap(_foreign(i, 0), version))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1, results


def test_a_live_holder_refuses_a_second_one_and_names_itself(place):
    place.swap(_foreign(3, 1.0), 0)
    lease = Lease([place], 30.0, _plain)
    with pytest.raises(LeaseHeld) as refused:
        lease.acquire()
    message = str(refused.value)
    assert "other-host" in message and "pid 4242" in message
    assert "since" in message and "last renewed" in message
    assert place.read()[0].token == 3, "a refused start must change nothing"


def test_an_expired_lease_is_taken_over_with_a_bigger_token(place):
    place.swap(_foreign(3, 40.0, timeout_s=30.0), 0)
    lease = Lease([place], 30.0, _plain)
    assert lease.acquire() == 4
    assert lease.took_over
    assert place.read()[0].is_me()


def test_a_released_lease_is_free_at_once(place):
    place.swap(_foreign(3, 0.0, released=True), 0)
    lease = Lease([place], 30.0, _plain)
    assert lease.acquire() == 4
    assert not lease.took_over


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    place = LocalPlace(str(tmp_path / "lease.json"))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    me = Holder.me(5, 30.0)
    place.swap(replace(me, pid=int(dead.stdout), pid_started=12345), 0)
    found, _ = place.read()
    assert found is not None
    assert found.free() == f"its holder, pid {int(dead.stdout)} on this host, is gone"
    assert Lease([place], 30.0, _plain).acquire() == 6


def test_the_lease_of_a_live_process_on_this_host_is_not_taken(tmp_path):
    place = LocalPlace(str(tmp_path / "lease.json"))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = Holder.me(5, 30.0)
        with open(f"/proc/{alive.pid}/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        place.swap(replace(holder, pid=alive.pid, pid_started=started), 0)
        with pytest.raises(LeaseHeld):
            Lease([place], 30.0, _plain).acquire()
    finally:
        alive.kill()
        alive.wait()


def test_a_holder_taken_over_while_paused_finds_out_before_it_writes(place):
    """A paused holder's renewal thread was paused too: `check()` itself must notice."""
    holder = Lease([place], 2.0, _plain)
    token = holder.acquire()
    assert holder.check() == token
    # another process takes over once the lease expired (as after a SIGSTOP)
    _, version = place.read()
    place.swap(_foreign(token + 1, 0.0), version)
    holder.valid_until = time.monotonic() - 1  # the pause outlasted the holder's trust
    with pytest.raises(LeaseLost) as lost:
        holder.check()
    assert "other-host" in str(lost.value)


def test_a_fresh_holder_checks_without_a_round_trip(place):
    holder = Lease([place], 30.0, _plain)
    holder.acquire()
    calls = []
    real = place.read

    def counted() -> tuple[Holder | None, int]:
        calls.append(1)
        return real()

    place.read = counted
    for _ in range(1000):
        holder.check()
    assert not calls


def test_renewals_keep_the_lease_and_a_release_frees_it(place):
    holder = Lease([place], 1.0, _plain)
    holder.acquire()
    first = place.read()[0]
    lost: list[str] = []
    holder.start_renewing(on_lost=lost.append)
    deadline = time.monotonic() + 30
    while (now := place.read()[0]) is not None and now.renewed == first.renewed:
        assert time.monotonic() < deadline, "never renewed"
        time.sleep(0.05)
    assert now is not None and now.token == first.token and now.is_me(), "renewed, not taken"
    assert not lost
    holder.release()
    assert place.read()[0].released
    assert Lease([place], 1.0, _plain).acquire() == 2


def test_a_release_while_a_renewal_waits_for_storage_returns_and_says_so(place, caplog):
    """A process told to stop during a storage outage gives up at once: the renewal thread
    holds the lease's lock through its storage retries, and the successor can wait for
    the lease to expire."""
    holder = Lease([place], 30.0, _plain)
    holder.acquire()
    renewing = threading.Event()
    storage_back = threading.Event()

    def renewal_retrying_through_an_outage() -> None:
        with holder.lock:
            renewing.set()
            storage_back.wait(60)

    threading.Thread(target=renewal_retrying_through_an_outage, daemon=True).start()
    assert renewing.wait(10)
    began = time.monotonic()
    holder.release(wait_s=0.5)
    waited = time.monotonic() - began
    assert waited < 30, "it waited for the storage"
    assert "lease not given up" in caplog.text
    now = place.read()[0]
    assert now is not None and not now.released, "not written: it expires on its own"
    storage_back.set()  # (a process that lives on gives it up now, in the background)
    with pytest.raises(LeaseLost):
        holder.check()  # and this process writes nothing more


def test_leases_over_two_places_are_all_or_nothing(tmp_path):
    free = LocalPlace(str(tmp_path / "a.json"))
    held = LocalPlace(str(tmp_path / "b.json"))
    held.swap(_foreign(7, 0.0), 0)
    with pytest.raises(LeaseHeld):
        Lease([free, held], 30.0, _plain).acquire()
    assert free.read() == (None, 0), "nothing taken when one place is held"
    held.swap(_foreign(7, 0.0, released=True), 1)
    assert Lease([free, held], 30.0, _plain).acquire() == 8  # past both places' tokens
    assert free.read()[0] is not None


def test_a_lease_that_stopped_being_renewed_is_waited_for_then_taken(place):
    """A holder that died on another host: a restart waits for the expiry, no second try."""
    dead = _foreign(3, 1.6, timeout_s=3.0)  # past half its timeout: not renewing
    place.swap(dead, 0)
    assert Lease([place], 3.0, _plain).acquire() == 4
    assert time.time() > dead.renewed + dead.timeout_s, "taken only once expired"


def test_a_new_holder_outranks_every_share_of_the_dataflow(tmp_path):
    """An output partition written under process 1's share in one run may be written
    under process 0's in the next (a rescaled cluster): the Delta owner `txn` compares
    their tokens, so a new token is above every share's, not only its own."""
    settings = Settings(source="replay", output=str(tmp_path / "out"), lease_timeout_s=30.0)
    run = RunArgs(tmp_path / "recovery", process=0, processes=1)
    (tmp_path / "recovery").mkdir()
    for process, token in ((0, 3), (1, 9)):
        for place in _lease(settings, "flow", run, process).places:
            place.swap(_foreign(token, 0.0, released=True), 0)
    above = _newest_token(settings, "flow", run, _shares(settings, "flow", run))
    assert above == 9
    assert _lease(settings, "flow", run, 0).acquire(above) == 10


_PAUSED_MID_SWAP = """
import os, signal, sys
from ownership.lease import Holder, LocalPlace

fsync = os.fsync

def fsync_then_stop(fd):
    fsync(fd)
    os.kill(os.getpid(), signal.SIGSTOP)  # paused in the middle of its swap

os.fsync = fsync_then_stop
print(LocalPlace(sys.argv[1]).swap(Holder.me(1, 3.0), 0), flush=True)
"""


def test_a_holder_paused_in_the_middle_of_a_swap_blocks_no_one(tmp_path):
    """Seen in the suite: a zombie stopped while it held the lock of a local lease kept its
    replacement waiting until it was woken, then refused it as still renewing."""
    path = str(tmp_path / "lease.json")
    paused = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_MID_SWAP, path],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _state(paused.pid) != "T":
            assert time.monotonic() < deadline, "the child never paused"
            time.sleep(0.02)
        result: list[int | None] = []
        other = threading.Thread(
            target=lambda: result.append(LocalPlace(path).swap(_foreign(5, 0.0), 0)), daemon=True
        )
        other.start()
        other.join(timeout=10)
        assert result == [1], "a swap must not wait for a paused process"
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    out, _ = paused.communicate(timeout=30)
    assert out.strip() == "None", "the paused swap must lose: version 1 is taken"
    holder, version = LocalPlace(path).read()
    assert version == 1 and holder is not None and holder.token == 5


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
