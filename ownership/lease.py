"""A lease: one named place (a local file, or a GCS object) says which process may write.

A holder takes the lease when it is free, released, expired (not renewed for
`timeout_s`), or held by a process that is provably dead on this very host (same
host name and boot, and its pid is gone or is another process now). It renews it
every `timeout_s / 4`. Every write of the record is a compare-and-swap: on GCS an
upload with `ifGenerationMatch`, on local disk a link to the next version's file that
fails when it exists. So of two processes racing for a lease exactly one wins, and a
renewal by a process that lost the lease fails.

Each takeover bumps the lease's `token`, the fencing token: writers put it into
what they commit, so a file or commit can always be traced to its owner.

A holder trusts its lease only until `timeout_s * 3 / 4` after the start of its
last successful renewal, measured on its own monotonic clock. `check()` past that
renews synchronously before saying yes. So a process that was paused (SIGSTOP, a
long GC, a frozen VM) never writes on the strength of a renewal thread that was
paused with it: on waking, its first check finds the lease taken and stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

log = logging.getLogger(__name__)


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as stored in its place (JSON)."""

    token: int  # the fencing token: one more at every takeover
    host: str
    boot_id: str
    pid: int
    pid_started: int | None  # tells a reused pid from the holder
    since: float  # wall clock (s) of the takeover
    renewed: float  # wall clock (s) of the last renewal
    timeout_s: float
    released: bool = False

    @classmethod
    def me(cls, token: int, timeout_s: float) -> Holder:
        now = time.time()
        pid = os.getpid()
        return cls(token, socket.gethostname(), _boot_id(), pid, _started(pid), now, now, timeout_s)

    def describe(self) -> str:
        ago = time.time() - self.renewed
        return (
            f"host {self.host} pid {self.pid} since {_when(self.since)}, "
            f"last renewed {_when(self.renewed)} ({ago:.0f} s ago)"
        )

    def is_me(self) -> bool:
        pid = os.getpid()
        return (self.host, self.boot_id, self.pid, self.pid_started) == (
            socket.gethostname(),
            _boot_id(),
            pid,
            _started(pid),
        )

    def free(self) -> str | None:
        """Why another process may take this lease now, or None while it is held."""
        if self.released:
            return "released"
        if time.time() - self.renewed > self.timeout_s:
            return f"expired: not renewed for {time.time() - self.renewed:.0f} s"
        here = (self.host, self.boot_id) == (socket.gethostname(), _boot_id())
        if here and self.boot_id and _started(self.pid) != self.pid_started:
            return f"its holder, pid {self.pid} on this host, is gone"
        return None


class Place(Protocol):
    """Where a lease is stored; every write is a compare-and-swap on `version`."""

    where: str

    def read(self) -> tuple[Holder | None, int]:
        """The holder (None when there is none) and the version to swap against."""
        ...

    def swap(self, holder: Holder, version: int) -> int | None:
        """Store `holder` if the place is still at `version`; its new version, or None."""
        ...


def _to_json(holder: Holder) -> bytes:
    return json.dumps(asdict(holder), sort_keys=True).encode()


def _from_json(data: bytes) -> Holder:
    return Holder(**json.loads(data))


class LocalPlace:
    """A lease in local files: version `n` of the record is the file `{path}.v{n}`, made by
    an atomic `link` that fails when the file exists; the newest file is the lease.

    Nothing is locked. A compare-and-swap from version `n` links version `n + 1`: of
    two processes racing from `n`, exactly one link succeeds. So a holder paused at any
    moment (even in the middle of a swap) blocks no one; with a lock, one paused while
    holding it blocked every takeover until it woke. Each swap removes the versions
    older than the one it replaced."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = path
        self._directory = os.path.dirname(path) or "."
        self._prefix = os.path.basename(path) + ".v"

    def _versions(self) -> list[int]:
        try:
            names = os.listdir(self._directory)
        except FileNotFoundError:
            return []
        n = len(self._prefix)
        return [int(f[n:]) for f in names if f.startswith(self._prefix) and f[n:].isdigit()]

    def read(self) -> tuple[Holder | None, int]:
        while True:
            versions = self._versions()
            if not versions:
                return None, 0
            newest = max(versions)
            try:
                with open(f"{self.path}.v{newest}", "rb") as f:
                    record = json.loads(f.read())
            except FileNotFoundError:  # a newer version replaced it meanwhile
                continue
            record.pop("version", None)
            return Holder(**record), newest

    def swap(self, holder: Holder, version: int) -> int | None:
        if self.read()[1] != version:
            return None
        os.makedirs(self._directory, exist_ok=True)
        hidden = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(hidden, "w") as f:
            json.dump({**asdict(holder), "version": version + 1}, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(hidden, f"{self.path}.v{version + 1}")
        except FileExistsError:
            return None
        finally:
            os.unlink(hidden)
        if max(self._versions()) != version + 1:
            # `version + 1` had been made and removed long ago: this process's view was
            # stale, and newer versions exist. It did not win.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}.v{version + 1}")
            return None
        for old in self._versions():
            if old < version:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}.v{old}")
        return version + 1


class GcsPlace:
    """A lease in a GCS object; its version is the object's generation (0: absent), and a
    write is an upload with `ifGenerationMatch`, which GCS refuses (412) when stale."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.bucket, self.key = path.split("/", 1)
        self.where = f"gs://{path}"

    def read(self) -> tuple[Holder | None, int]:
        try:
            meta = self.fs.call("GET", "b/{}/o/{}", self.bucket, self.key, json_out=True)
        except FileNotFoundError:
            return None, 0
        generation = int(meta["generation"])
        try:
            _, data = self.fs.call(
                "GET", "b/{}/o/{}", self.bucket, self.key, alt="media", generation=generation
            )
        except FileNotFoundError:  # replaced meanwhile: the caller's swap will fail
            return None, generation
        return _from_json(data), generation

    def swap(self, holder: Holder, version: int) -> int | None:
        # gcsfs's multipart upload, with the precondition it does not expose
        meta = json.dumps({"name": self.key})
        body = (
            b"--==0==\nContent-Type: application/json; charset=UTF-8\n\n"
            + meta.encode()
            + b"\n--==0==\nContent-Type: application/json\n\n"
            + _to_json(holder)
            + b"\n--==0==--"
        )
        try:
            stored = self.fs.call(
                "POST",
                f"{self.fs._location}/upload/storage/v1/b/{quote(self.bucket)}/o",
                uploadType="multipart",
                ifGenerationMatch=str(version),
                headers={"Content-Type": 'multipart/related; boundary="==0=="'},
                data=body,
                json_out=True,
            )
        except FileExistsError:  # 412: the precondition failed
            return None
        return int(stored["generation"])


class LeaseHeld(Exception):
    """Another live process holds the lease; the message says who."""


class LeaseLost(Exception):
    """This process held the lease and another took it over; the message says who."""


@dataclass
class _Held:
    place: Place
    holder: Holder
    version: int


class Lease:
    """One lease over one or more places (all taken, with one token, or none).

    ```python
    retrying = StorageRetry("clickstream", budget_s=300)  # or any (action, what) -> result
    lease = Lease([LocalPlace("recovery/.lease-p0.json")], timeout_s=30, retry=retrying)
    token = lease.acquire()      # LeaseHeld if another live process has it
    lease.start_renewing(on_lost=print)
    lease.check()                # before every write: LeaseLost once taken over
    lease.release()
    ```
    """

    def __init__(
        self, places: list[Place], timeout_s: float, retry: Callable[[Callable[[], Any], str], Any]
    ) -> None:
        self.places = places
        self.timeout_s = timeout_s
        self.retry = retry  # runs a storage action, retrying what may heal
        self.token = 0
        self.took_over = False  # from a holder that did not release it (killed, or paused)
        self.held: list[_Held] = []
        self.valid_until = 0.0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def acquire(self, above: int = 0) -> int:
        """Take every place, or none; returns the fencing token, greater than `above`
        and than every token these places held.

        A holder renews every `timeout_s / 4`. One whose last renewal is older than
        half its timeout has most likely died (on another host, or this process could
        have told): wait for its lease to expire rather than refuse, so a restart after
        a crash needs no second try. A holder that renewed more recently is running:
        `LeaseHeld` at once."""
        while True:
            found = [(p, *self.retry(p.read, f"read the lease {p.where}")) for p in self.places]
            held = [
                (place, h)
                for place, h, _ in found
                if h is not None and h.free() is None and not h.is_me()
            ]
            if not held:
                break
            place, holder = held[0]
            age = time.time() - holder.renewed
            if age <= holder.timeout_s / 2:
                raise LeaseHeld(
                    f"{place.where} is held by {holder.describe()}; it expires "
                    f"{holder.timeout_s:.0f} s after its last renewal"
                )
            wait = holder.timeout_s - age + 0.5
            log.warning(
                "lease %s: waiting %.0f s for it to expire: held by %s, which stopped renewing",
                place.where,
                wait,
                holder.describe(),
            )
            time.sleep(max(0.1, wait))
        self.token = 1 + max([above, *(h.token for _, h, _ in found if h is not None)])
        started = time.monotonic()
        mine = Holder.me(self.token, self.timeout_s)
        for place, holder, version in found:
            new = self.retry(partial_swap(place, mine, version), f"take the lease {place.where}")
            if new is None:  # another process took it between our read and our write
                now, _ = self.retry(place.read, f"read the lease {place.where}")
                self.release()
                raise LeaseHeld(
                    f"{place.where} was just taken by "
                    f"{now.describe() if now else 'another process'}"
                )
            if holder is not None and not holder.released:  # killed, or paused
                self.took_over = True
                why = holder.free() or "held by this process"
                log.info("lease %s taken over (%s) from %s", place.where, why, holder.describe())
            self.held.append(_Held(place, mine, new))
        self.valid_until = started + self.timeout_s * 0.75
        return self.token

    def renew(self) -> None:
        """Renew every place now; `LeaseLost` when one was taken over."""
        with self.lock:
            if self.stopping.is_set():
                raise LeaseLost("released by this process, which is stopping")
            started = time.monotonic()
            for held in self.held:
                fresh = replace(held.holder, renewed=time.time())
                new = self.retry(
                    partial_swap(held.place, fresh, held.version),
                    f"renew the lease {held.place.where}",
                )
                if new is None:
                    now, version = self.retry(held.place.read, f"read the lease {held.place.where}")
                    if now is None or now.token != self.token or not now.is_me():
                        who = now.describe() if now else "nobody (it was deleted)"
                        raise LeaseLost(f"{held.place.where} is now held by {who}")
                    new, fresh = version, now  # our own write landed though it seemed to fail
                held.holder, held.version = fresh, new
            self.valid_until = started + self.timeout_s * 0.75

    def check(self, lasting_s: float = 0.0) -> int:
        """The fencing token, once sure the lease is still ours for `lasting_s` more: at
        once while the last renewal is fresh enough, else after renewing it; `LeaseLost`
        when it was taken over. `lasting_s` must stay below half the timeout (a renewal
        every quarter leaves at least half of it)."""
        if time.monotonic() + lasting_s >= self.valid_until:
            self.renew()
        return self.token

    def start_renewing(self, on_lost: Callable[[str], None]) -> None:
        """Renew every `timeout_s / 4` in a daemon thread; `on_lost(message)` if lost."""

        def loop() -> None:
            while not self.stopping.wait(self.timeout_s / 4):
                try:
                    self.renew()
                except LeaseLost as ex:
                    on_lost(str(ex))
                    return
                except Exception as ex:  # storage trouble: check() stops writes once stale
                    log.warning("lease renewal failed: %s: %s", type(ex).__name__, ex)

        threading.Thread(target=loop, name="lease", daemon=True).start()

    def release(self, wait_s: float = 5.0) -> None:
        """Give the lease up (a clean end), so the next start need not wait for it.

        At most `wait_s`: a renewal retrying through a storage outage holds the lease's
        lock, and gcsfs retries a write for half a minute on its own, while a process
        told to stop must stop (Kubernetes' grace is 30 s). Not given up, the lease
        expires on its own, and the next start waits for that."""
        self.stopping.set()
        self.valid_until = 0.0  # a writer's next check() finds it released
        giving_up = threading.Thread(target=self._give_up, name="lease-release", daemon=True)
        giving_up.start()
        giving_up.join(wait_s)
        if giving_up.is_alive():
            log.warning(
                "lease not given up within %.0f s (the storage does not answer); "
                "it expires %.0f s after its last renewal",
                wait_s,
                self.timeout_s,
            )

    def _give_up(self) -> None:
        with self.lock:
            for held in self.held:
                with contextlib.suppress(Exception):
                    held.place.swap(replace(held.holder, released=True), held.version)
            self.held = []


def partial_swap(place: Place, holder: Holder, version: int) -> Callable[[], int | None]:
    return lambda: place.swap(holder, version)
