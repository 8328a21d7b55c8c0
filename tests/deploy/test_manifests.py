"""deploy/'s manifests, parsed and checked against what the dataflow reads: every
variable is one a settings module reads, the Service's ports are the process's, the
probes ask for paths the process serves, the replica counts agree. A typo fails here,
not on a cluster."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from config import DATAFLOWS
from deploy.manifests import main as write_manifests
from monitoring.server import PATHS
from tests.processes import ROOT

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
SETTINGS_MODULES = ["config.py", "setting.py", "process.py", "kafka_client/settings.py"]
VARIABLE = re.compile(r'"((?:CLICKSTREAM|KAFKA|BYTEWAX)_[A-Z0-9_]+)"')


def known_variables() -> set[str]:
    """Every variable a settings module reads: their source names them as literals."""
    found: set[str] = set()
    for module in SETTINGS_MODULES:
        found |= set(VARIABLE.findall((ROOT / module).read_text()))
    return found


def _documents(path: Path) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text()) if d}


def check(path: Path) -> list[str]:
    """What is wrong with the manifest at `path`."""
    docs = _documents(path)
    problems = []
    service, statefulset = docs["Service"], docs["StatefulSet"]
    pod = statefulset["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    problems += [f"{name} is no setting" for name in sorted(set(env) - known_variables())]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports != container_ports:
        problems.append(f"the Service's ports {ports} are not the container's {container_ports}")
    if str(ports.get("cluster")) != env.get("CLICKSTREAM_CLUSTER_PORT", "9999"):
        problems.append("the cluster port is not CLICKSTREAM_CLUSTER_PORT")
    if str(ports.get("metrics")) != env.get("CLICKSTREAM_METRICS_PORT"):
        problems.append("the metrics port is not CLICKSTREAM_METRICS_PORT")
    if pod["metadata"]["annotations"].get("prometheus.io/port") != str(ports.get("metrics")):
        problems.append("Prometheus scrapes another port than the metrics port")
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        if get["path"] not in PATHS:
            problems.append(f"{probe} asks for {get['path']}, which the process does not serve")
        if get["port"] not in ("metrics", ports.get("metrics")):
            problems.append(f"{probe} asks another port than the metrics port")
    if container["readinessProbe"] == container["livenessProbe"]:
        problems.append("readiness and liveness say the same thing")
    if str(statefulset["spec"]["replicas"]) != env.get("CLICKSTREAM_REPLICAS"):
        problems.append("the StatefulSet's replicas are not CLICKSTREAM_REPLICAS")
    if statefulset["spec"]["serviceName"] != service["metadata"]["name"]:
        problems.append("the StatefulSet's serviceName is not the Service")
    if env.get("CLICKSTREAM_SERVICE", service["metadata"]["name"]) != service["metadata"]["name"]:
        problems.append("CLICKSTREAM_SERVICE is not the Service")
    if service["spec"].get("clusterIP") != "None":
        problems.append("the Service is not headless")
    if statefulset["spec"].get("podManagementPolicy") != "Parallel":
        problems.append("podManagementPolicy is not Parallel: every process must start at once")
    if "PodDisruptionBudget" not in docs:
        problems.append("no PodDisruptionBudget")
    if container["args"][0] not in DATAFLOWS:
        problems.append(f"the container runs {container['args'][0]}, which is no dataflow")
    return problems


def test_the_manifests_agree_with_what_the_dataflow_reads():
    assert [p.name for p in MANIFESTS] == [
        "clickstream.yaml",
        "enrich.yaml",
        "user-clickstream.yaml",
    ]
    for path in MANIFESTS:
        assert check(path) == [], path


def test_a_typo_a_port_or_a_probe_path_is_caught(tmp_path):
    text = MANIFESTS[0].read_text()
    broken = {
        "CLICKSTREAM_STALL_TIMOUT is no setting": text.replace(
            "CLICKSTREAM_STALL_TIMEOUT", "CLICKSTREAM_STALL_TIMOUT"
        ),
        "the Service's ports": text.replace(
            "- {name: metrics, port: 9100}", "- {name: metrics, port: 9200}"
        ),
        "which the process does not serve": text.replace(
            "httpGet: {path: /health, port: metrics}\n            periodSeconds: 10",
            "httpGet: {path: /ready, port: metrics}\n            periodSeconds: 10",
        ),
    }
    for said, manifest in broken.items():
        assert manifest != text, said
        path = tmp_path / "m.yaml"
        path.write_text(manifest)
        assert any(said in p for p in check(path)), (said, check(path))


def test_the_manifests_are_the_templates_output():
    assert write_manifests(["--check"]) == 0, "run python -m deploy.manifests"


def test_the_systemd_unit_restarts_on_failure_and_on_an_outage_not_on_a_bad_setting():
    unit = (ROOT / "deploy" / "systemd" / "clickstream@.service").read_text()
    fields = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert fields["Restart"] == "on-failure"
    prevented = set(fields["RestartPreventExitStatus"].split())
    # setting.ConfigError exits 2: do not restart into it; setting.Unreachable exits 75
    assert prevented == {"2"}, prevented
    assert fields["ExecStart"].endswith("-m deploy.entrypoint %i")
