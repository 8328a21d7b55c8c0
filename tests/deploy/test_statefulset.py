"""The StatefulSet of deploy/kubernetes/clickstream.yaml, simulated on this machine.

Each pod is a network namespace of its own (`tests.hosts`) whose resolver knows the
pods' names as the headless Service's DNS gives them (`clickstream-N.clickstream`), and
each container starts as the manifest says: `python -m deploy.entrypoint clickstream`,
with `HOSTNAME` and the manifest's environment. Only what cannot be here is replaced:
a replay file for the Kafka topic (the namespaces reach no broker), folders for GCS and
the shared recovery volume, snapshots every second, and slow writes so that a run lasts.

`StatefulSet` plays the controller and the kubelet: it starts the pods, restarts a
container that exited (`restartPolicy: Always`; the back-off is shortened to a second),
deletes a pod with SIGTERM and, after the grace period, SIGKILL, scales, and rolls pods
one at a time, each ready before the next. Every case ends with the tables of an
uninterrupted run: nothing lost, nothing twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy.entrypoint import READY
from tests.hosts import Hosts
from tests.processes import ROOT, SLOW_RUN, clean_env, committed_epoch, error_lines
from tests.tables import assert_same_tables

MANIFEST = ROOT / "deploy" / "kubernetes" / "clickstream.yaml"
NAME = "clickstream"
GRACE_S = 30  # the manifest's terminationGracePeriodSeconds (checked below)


def manifest_env() -> dict[str, str]:
    """The container's environment in the manifest."""
    docs = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == GRACE_S
    (container,) = pod["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


class StatefulSet:
    """The pods of one StatefulSet on `hosts` (pod N on host N), as Kubernetes runs them."""

    def __init__(self, hosts: Hosts, env: dict[str, str], logs: Path) -> None:
        self.hosts = hosts
        self.env = env
        self.logs = logs
        self.replicas = 0
        self.pods: dict[int, subprocess.Popen] = {}
        self.restarts: Counter[int] = Counter()
        logs.mkdir(exist_ok=True)
        hosts.resolve({f"{NAME}-{i}.{NAME}": i for i in range(hosts.count)})

    def log(self, ordinal: int) -> Path:
        return self.logs / f"{NAME}-{ordinal}.log"

    def start(self, ordinal: int) -> None:
        """The pod's container: the entrypoint, with `HOSTNAME` and the pod's environment."""
        env = {**self.env, "HOSTNAME": f"{NAME}-{ordinal}"}
        env["CLICKSTREAM_REPLICAS"] = str(self.replicas)
        argv = [sys.executable, "-m", "deploy.entrypoint", NAME]
        self.pods[ordinal] = self.hosts.popen(ordinal, argv, self.log(ordinal), cwd=ROOT, env=env)

    def scale(self, replicas: int) -> None:
        """`replicas` in the spec and in CLICKSTREAM_REPLICAS: the template changed, so
        every pod is replaced (`delete`), and the ones beyond `replicas` are not made again."""
        for ordinal in sorted(self.pods, reverse=True):
            self.terminate(ordinal)
        self.pods = {}
        self.replicas = replicas
        for ordinal in range(replicas):
            self.start(ordinal)

    def terminate(self, ordinal: int) -> int:
        """SIGTERM, then SIGKILL after the grace period; the container's exit status."""
        pod = self.pods[ordinal]
        if pod.poll() is None:
            pod.send_signal(signal.SIGTERM)
            try:
                pod.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                pod.kill()
        return pod.wait()

    def delete(self, ordinal: int) -> int:
        """`kubectl delete pod`: terminated, then made again by the controller."""
        status = self.terminate(ordinal)
        self.start(ordinal)
        return status

    def tend(self) -> bool:
        """One pass of the kubelet: a container that failed is restarted. True when every
        pod has ended well (a bounded replay is done)."""
        done = True
        for ordinal, pod in list(self.pods.items()):
            status = pod.poll()
            if status is None:
                done = False
            elif status != 0:
                self.restarts[ordinal] += 1
                self.start(ordinal)
                done = False
        return done

    def ready(self, ordinal: int) -> bool:
        """The readiness probe: `/health` on the manifest's metrics port answers 200."""
        port = int(self.env["CLICKSTREAM_METRICS_PORT"])
        return self.hosts.http_status(ordinal, port, "/health") == 200

    def run_until(
        self, what: str, condition: Callable[[], bool], timeout: float = 120, end: bool = False
    ) -> None:
        """Tend the pods until `condition` holds. Unless `end` is what is waited for, the
        pods ending first fails at once: the input ran out before the test's scenario."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.tails()}"
            done = self.tend()
            assert end or not done, f"the input ran out while waiting for {what}: {self.tails()}"
            time.sleep(1.0)  # the back-off, shortened

    def run_to_end(self) -> None:
        self.run_until("the end of the input", self.tend, timeout=600, end=True)

    def stop(self) -> None:
        for pod in self.pods.values():
            if pod.poll() is None:
                pod.kill()
            pod.wait()

    def tails(self) -> str:
        return "\n".join(
            f"--- {self.log(i).name}\n{self.log(i).read_text()[-1500:]}" for i in sorted(self.pods)
        )


@pytest.fixture
def statefulset(tmp_path, paced_dump):
    """A StatefulSet of `clickstream` on three hosts, not yet scaled up."""
    env = clean_env(**manifest_env())
    del env["KAFKA_CONFIG_FILE"]  # the Secret with client.properties: no broker here
    env.update(
        CLICKSTREAM_SOURCE=f"replay:{paced_dump}",
        CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
        CLICKSTREAM_RECOVERY_DIR=str(tmp_path / "recovery"),  # the ReadWriteMany volume
        CLICKSTREAM_SNAPSHOT_INTERVAL="1",
        **SLOW_RUN,
    )
    # 0.1 ms a record: at least 10 s for each of the 3 parts of the replay, whatever the
    # machine's speed. Files written at full speed: no kill here needs a half-written
    # one, and slow ones would stretch the run 3 to 4 times.
    env.update(
        CLICKSTREAM_BATCH_SIZE="10",
        CLICKSTREAM_TEST_SLOW_READS="0.0001",
        CLICKSTREAM_TEST_SLOW_WRITES="0",
    )
    with Hosts(3) as hosts:
        pods = StatefulSet(hosts, env, tmp_path / "logs")
        try:
            yield pods
        finally:
            pods.stop()


def _an_epoch_later(pods: StatefulSet, recovery: Path) -> None:
    start = committed_epoch(recovery) if recovery.exists() else -1
    pods.run_until("a committed epoch", lambda: committed_epoch(recovery) > start + 1)


def _logs(pods: StatefulSet) -> str:
    return "".join(pods.log(i).read_text() for i in range(3) if pods.log(i).exists())


@pytest.mark.slow
def test_three_pods_start_and_a_killed_pod_is_restarted_exactly_once(
    tmp_path, statefulset, paced_reference
):
    recovery = tmp_path / "recovery"
    statefulset.scale(3)
    _an_epoch_later(statefulset, recovery)
    assert (recovery / READY).exists(), "process 0 makes the store and marks it ready"
    assert all(statefulset.ready(i) for i in range(3))

    statefulset.pods[1].kill()  # an OOM kill or a lost node: no SIGTERM
    statefulset.run_to_end()

    assert statefulset.restarts[1] >= 1, "the killed pod's container was restarted"
    for i in (0, 2):  # the others lost their peer, said so in one line, and restarted
        assert statefulset.restarts[i] >= 1
        said = statefulset.log(i).read_text()
        (line, *_) = error_lines(said)
        assert "lost its connection to another process of the cluster" in line, line
        assert "taken over" not in said, "it gave its lease up on the way out"
    assert "taken over (its holder, pid" in statefulset.log(1).read_text()
    assert_same_tables(tmp_path / "out", paced_reference)


@pytest.mark.slow
def test_a_scale_from_3_to_2_and_a_rolling_restart_are_exactly_once_and_no_lease_refuses(
    tmp_path, statefulset, paced_reference
):
    recovery = tmp_path / "recovery"
    # The run must outlast a scale and a rollout of two pods (12-15 s; more on a loaded
    # machine): 0.2 ms a record, at least 20 s for each part.
    statefulset.env["CLICKSTREAM_TEST_SLOW_READS"] = "0.0002"
    statefulset.scale(3)
    _an_epoch_later(statefulset, recovery)

    statefulset.scale(2)
    _an_epoch_later(statefulset, recovery)

    # `kubectl rollout restart`: one pod at a time, highest ordinal first, each ready and
    # the cluster running again (a new epoch) before the next
    for ordinal in (1, 0):
        assert statefulset.delete(ordinal) == -signal.SIGTERM
        statefulset.run_until(f"pod {ordinal} ready", lambda o=ordinal: statefulset.ready(o))
        _an_epoch_later(statefulset, recovery)
    statefulset.run_to_end()

    said = _logs(statefulset)
    assert said.count("SIGTERM: stops, giving up its lease") >= 2, "the rollout's pods let go"
    assert "already running" not in said, "no lease refused a pod"
    assert "for it to expire" not in said, "no pod waited for a lease"
    assert_same_tables(tmp_path / "out", paced_reference)
