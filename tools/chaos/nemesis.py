"""The nemesis: faults at times the seed chooses, each in a thread of its own, so a new
one may start while another is in force (two of one kind take turns). Every kind is
injected at least once; each fault's start and end go to `faults.jsonl`.

| kind | what happens |
|---|---|
| `kill9` | one process of a cluster is SIGKILLed (its supervisor restarts the cluster) |
| `zombie` | one process is SIGSTOPped past its lease, then SIGCONTed |
| `broker_restart` | the broker is killed and started again (same ports, same data) |
| `registry_outage` | the Schema Registry refuses every connection for 10-60 s (*) |
| `storage_outage` | the GCS emulator is stopped for 10-60 s (*) |
| `alertmanager_outage` | Alertmanager is stopped for 10-60 s (*) |
| `net_cut` | the link between a cluster's two processes carries nothing for 10-30 s |
| `add_partitions` | the clicks topic gets two more partitions |
| `second_instance` | a second instance of a dataflow is started by mistake |

(*) 10-30 s in a run shorter than 4 minutes, so that its faults end soon after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewPartitions

from infra import monitoring
from infra.gcs_emulator import GcsEmulator
from infra.kafka_broker import Broker
from kafka_client.admin import client_config
from kafka_client.settings import KafkaSettings
from tools.chaos.gate import Gate
from tools.chaos.supervisor import ROOT, Cluster

KINDS = (
    "kill9",
    "zombie",
    "broker_restart",
    "registry_outage",
    "storage_outage",
    "alertmanager_outage",
    "net_cut",
    "add_partitions",
    "second_instance",
)


@dataclass
class World:
    """What the nemesis acts on."""

    workdir: Path
    kafka: KafkaSettings
    broker: Broker
    registry_gate: Gate
    gcs: GcsEmulator
    storage_gates: tuple[Gate, Gate]  # the dataflows' way to the emulator: JSON, XML API
    alertmanager: monitoring.Server
    alertmanager_config: dict
    clusters: dict[str, Cluster]
    lease_timeout_s: float
    # the longest outage: 60 s, less in a short run, so its faults end soon after it
    longest_outage_s: float = 60.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    seconds_instances: list[str] = field(default_factory=list)


class Nemesis:
    def __init__(self, world: World, seed: int, seconds: float, extra: int) -> None:
        self.world = world
        self.rng = random.Random(seed * 7919 + 1)
        kinds = list(KINDS) + [self.rng.choice(KINDS) for _ in range(extra)]
        self.rng.shuffle(kinds)
        # the first fault once every cluster has committed; the last with room to end
        times = sorted(self.rng.uniform(15.0, max(16.0, seconds - 25.0)) for _ in kinds)
        self.schedule = list(zip(times, kinds, strict=True))
        self.journal = world.workdir / "faults.jsonl"
        self.injected: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self._began = 0.0
        self._locks = {kind: threading.Lock() for kind in KINDS}

    def run(self, stop: threading.Event) -> None:
        """Inject the schedule (times from now), then wait for every fault to end."""
        self._began = time.monotonic()
        for at, kind in self.schedule:
            if stop.wait(max(0.0, at - (time.monotonic() - self._began))):
                break
            seed = self.rng.randrange(2**32)
            thread = threading.Thread(target=self._inject, args=(kind, seed), daemon=True)
            thread.start()
            self.threads.append(thread)
        for thread in self.threads:
            thread.join()

    def _inject(self, kind: str, seed: int) -> None:
        rng = random.Random(seed)
        # two faults of one component do not run at once (two restarts of one broker
        # would start two brokers on its ports): the second begins when the first ends
        with self._locks[kind]:
            self._inject_now(kind, rng)

    def _inject_now(self, kind: str, rng: random.Random) -> None:
        start = time.monotonic() - self._began
        try:
            detail = FAULTS[kind](self.world, rng)
        except Exception as ex:  # a fault that cannot be injected is the run's failure
            first = str(ex).splitlines()[0][:200] if str(ex) else ""
            self.errors.append(f"the nemesis could not {kind}: {type(ex).__name__}: {first}")
            detail = f"failed: {first}"
        end = time.monotonic() - self._began
        self.injected[kind] += 1
        entry = {"kind": kind, "start_s": round(start, 1), "end_s": round(end, 1), "detail": detail}
        with self.world.lock, self.journal.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def overlaps(self) -> int:
        """How many pairs of faults were in force at the same time."""
        spans = [json.loads(line) for line in self.journal.read_text().splitlines()]
        return sum(
            1
            for i, a in enumerate(spans)
            for b in spans[i + 1 :]
            if a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]
        )


def _process(world: World, rng: random.Random) -> tuple[Cluster, int] | None:
    """A live process of a random cluster."""
    names = list(world.clusters)
    rng.shuffle(names)
    for name in names:
        pids = world.clusters[name].pids()
        if pids:
            return world.clusters[name], rng.choice(pids)
    return None


def kill9(world: World, rng: random.Random) -> str:
    found = _process(world, rng)
    if found is None:
        return "no process running"
    cluster, pid = found
    os.kill(pid, signal.SIGKILL)
    return f"{cluster.name} pid {pid}"


def zombie(world: World, rng: random.Random) -> str:
    found = _process(world, rng)
    if found is None:
        return "no process running"
    cluster, pid = found
    pause = world.lease_timeout_s + rng.uniform(2, 8)
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return f"{cluster.name} pid {pid} gone"
    time.sleep(pause)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
    return f"{cluster.name} pid {pid} paused {pause:.0f} s"


def broker_restart(world: World, rng: random.Random) -> str:
    down = rng.uniform(2, 15)
    world.broker.stop(kill=True)
    time.sleep(down)
    world.broker.restart()
    return f"down {down:.0f} s, then started again"


def _outage(
    world: World, rng: random.Random, stop: Callable[[], Any], start: Callable[[], Any], what: str
) -> str:
    """`stop`, 10 s to the longest outage later `start`."""
    down = rng.uniform(10, world.longest_outage_s)
    stop()
    time.sleep(down)
    start()
    return f"{what} for {down:.0f} s"


def registry_outage(world: World, rng: random.Random) -> str:
    gate = world.registry_gate
    return _outage(world, rng, gate.refuse, gate.open, "refused connections")


def storage_outage(world: World, rng: random.Random) -> str:
    # A cut, not a stop: the emulator reads every object it holds when it starts, minutes
    # on this machine once a run has written a few thousand files
    gates = world.storage_gates

    def refuse() -> None:
        for gate in gates:
            gate.refuse()

    def reopen() -> None:
        for gate in gates:
            gate.open()

    return _outage(world, rng, refuse, reopen, "refused connections")


def alertmanager_outage(world: World, rng: random.Random) -> str:
    server = world.alertmanager

    def start() -> None:  # same directory and port: the recorder's upstream stays right
        world.alertmanager = monitoring.start_alertmanager(
            Path(server.workdir), world.alertmanager_config, server.port, timeout=120
        )

    return _outage(world, rng, server.stop, start, "stopped")


def net_cut(world: World, rng: random.Random) -> str:
    name = rng.choice(list(world.clusters))
    gate = world.clusters[name].gate
    if gate is None:
        return f"{name} not started"
    cut = rng.uniform(10, min(30, world.longest_outage_s))
    gate.blackhole()
    time.sleep(cut)
    gate.open()
    return f"{name}: processes cut apart for {cut:.0f} s"


# How long the broker's controller may take to add partitions. Under a chaos run's disk
# load, the test broker's KRaft controller has taken 25 s to write one metadata record
# (seed 5, "Exceptionally slow controller event writeNoOpRecord"), so 30 s was too short.
_ADMIN_TIMEOUT_S = 120.0


def add_partitions(world: World, rng: random.Random) -> str:
    topic = world.kafka.clickstream_topic
    admin = AdminClient(client_config(world.kafka))
    with world.lock:
        now = len(admin.list_topics(topic, timeout=_ADMIN_TIMEOUT_S).topics[topic].partitions)
        added = admin.create_partitions([NewPartitions(topic, now + 2)])[topic]
        try:
            added.result(timeout=_ADMIN_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(
                f"the broker did not add partitions to {topic} in {_ADMIN_TIMEOUT_S:.0f} s"
            ) from None
    return f"{topic}: {now} -> {now + 2} partitions"


def second_instance(world: World, rng: random.Random) -> str:
    """Another instance of a dataflow, on the same store and output, for up to 20 s."""
    cluster = world.clusters[rng.choice(list(world.clusters))]
    log = world.workdir / f"second-{cluster.name}.log"
    with log.open("a") as out:
        proc = subprocess.Popen(
            cluster.command(), cwd=ROOT, env=cluster.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        code = proc.wait(timeout=20)
        what = f"exited {code}"
    except subprocess.TimeoutExpired:
        proc.terminate()  # it took the lease over: a clean stop gives it back
        code = proc.wait(timeout=60)
        what = f"still running after 20 s, stopped with {code}"
    world.seconds_instances.append(f"{cluster.name}: {what}")
    return f"{cluster.name}: {what}"


FAULTS: dict[str, Callable[[World, random.Random], Any]] = {
    "kill9": kill9,
    "zombie": zombie,
    "broker_restart": broker_restart,
    "registry_outage": registry_outage,
    "storage_outage": storage_outage,
    "alertmanager_outage": alertmanager_outage,
    "net_cut": net_cut,
    "add_partitions": add_partitions,
    "second_instance": second_instance,
}
