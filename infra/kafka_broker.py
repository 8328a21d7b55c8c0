"""A real single-node Apache Kafka broker (KRaft) for tests and demos, from Maven Central.

    python -m infra.kafka_broker up      # prints the env to use; state in .cache/kafka/run
    python -m infra.kafka_broker down

The broker jars (`org.apache.kafka:kafka_2.13`, see infra/kafka/pom.xml) are fetched
once with Maven into .cache/kafka/libs. The broker runs on 127.0.0.1 with free
ports, in its own directory, and is stopped by its PID. It has three listeners:

- PLAINTEXT, for tests and demos,
- SASL_PLAINTEXT with PLAIN users (`alice` / `alice-secret`) and SCRAM-SHA-256/512
  users (`bob` / `bob-secret`),
- SASL_SSL with the same users and a self-signed certificate made by keytool,
  whose CA file is written next to it for clients (`ssl.ca.location`).

Needs Java 17+ and Maven. Fails loudly, with the broker log, when it cannot start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from dataclasses import asdict, dataclass
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
LIBS = ROOT / ".cache" / "kafka" / "libs"
POM = ROOT / "infra" / "kafka" / "pom.xml"
DEFAULT_RUN_DIR = ROOT / ".cache" / "kafka" / "run"

SASL_USERS = {"alice": "alice-secret", "carol": "carol-secret"}
SCRAM_USERS = {"bob": "bob-secret"}  # SCRAM-SHA-256 and SCRAM-SHA-512, on both SASL listeners
ADMIN = ("admin", "admin-secret")
STORE_PASSWORD = "broker-store-secret"


class BrokerError(RuntimeError):
    pass


@dataclass
class Broker(ServerProcess):
    """A running broker: where to reach it and how to stop it."""

    workdir: str
    pid: int
    port: int
    sasl_port: int
    ssl_port: int
    controller_port: int
    ca_file: str
    started: int = 0  # `infra.server.started_ticks`

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def restart(self) -> Broker:
        """Start the broker again, same ports and data (a broker coming back).

        This object then stands for the new process, so whoever holds it (a test
        fixture) stops the broker that runs, not the one that was stopped.
        """
        self.stop()
        launched = _launch(
            Path(self.workdir),
            self.port,
            self.sasl_port,
            self.ssl_port,
            self.controller_port,
            Path(self.ca_file),
        )
        self.pid, self.started = launched.pid, launched.started
        return self


def ensure_jars() -> Path:
    """Fetch the broker jars with Maven once; later calls return at once."""
    marker = LIBS / ".complete"
    if marker.exists():
        return LIBS
    with fetch_lock(LIBS.parent):
        if marker.exists():  # fetched while this caller waited
            return LIBS
        return _fetch_jars(marker)


def _fetch_jars(marker: Path) -> Path:
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka broker jars")
    LIBS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={LIBS}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not any(LIBS.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"fetching Kafka jars with Maven failed:\n{proc.stdout}\n{proc.stderr}")
    marker.touch()
    return LIBS


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java 17+ is needed to run the Kafka broker")
    return java


def _make_certificate(workdir: Path) -> Path:
    """A self-signed server certificate for 127.0.0.1/localhost, and its PEM for clients."""
    keystore = workdir / "server.p12"
    ca_file = workdir / "ca.pem"
    if keystore.exists() and ca_file.exists():
        return ca_file
    keytool = shutil.which("keytool") or str(Path(_java()).resolve().parent / "keytool")
    common = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", STORE_PASSWORD]
    subprocess.run(
        [
            keytool,
            "-genkeypair",
            "-alias",
            "broker",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-validity",
            "3650",
            "-dname",
            "CN=localhost",
            "-ext",
            "SAN=IP:127.0.0.1,DNS:localhost",
            "-keypass",
            STORE_PASSWORD,
            *common,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [keytool, "-exportcert", "-alias", "broker", "-rfc", "-file", str(ca_file), *common],
        check=True,
        capture_output=True,
    )
    return ca_file


def _server_properties(
    workdir: Path, port: int, sasl_port: int, ssl_port: int, controller_port: int, acls: bool
) -> str:
    users = " ".join(f'user_{u}="{p}"' for u, p in {**SASL_USERS, ADMIN[0]: ADMIN[1]}.items())
    jaas = (
        f"org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN[0]}" password="{ADMIN[1]}" {users};'
    )
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},"
            f"SASL_SSL://127.0.0.1:{ssl_port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},"
            f"SASL_PLAINTEXT://127.0.0.1:{sasl_port},SASL_SSL://127.0.0.1:{ssl_port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
            "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
            f"listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}",
            *(
                f"listener.name.{listener}.{mech}.sasl.jaas.config={scram}"
                for listener in ("sasl_plaintext", "sasl_ssl")
                for mech in ("scram-sha-256", "scram-sha-512")
            ),
            f"ssl.keystore.location={workdir / 'server.p12'}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.password={STORE_PASSWORD}",
            f"ssl.key.password={STORE_PASSWORD}",
            f"log.dirs={workdir / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=-1",
            *(_ACLS if acls else []),
            "",
        ]
    )


# An authorizer: the PLAINTEXT listener (tests, the controller) is a super user, as is
# the SASL admin; a topic with ACLs is only for the principals they name.
_ACLS = [
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    f"super.users=User:ANONYMOUS;User:{ADMIN[0]}",
    "allow.everyone.if.no.acl.found=true",
]


def start(workdir: Path | None = None, timeout: float = 120.0, acls: bool = False) -> Broker:
    """Fetch the jars if needed, then format and start a broker in `workdir` (with an
    ACL authorizer when `acls`)."""
    workdir = Path(workdir) if workdir else DEFAULT_RUN_DIR
    libs = ensure_jars()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ports = [free_port() for _ in range(4)]
    while len(set(ports)) < 4:
        ports = [free_port() for _ in range(4)]
    port, sasl_port, ssl_port, controller_port = ports
    ca_file = _make_certificate(workdir)
    config = workdir / "server.properties"
    config.write_text(_server_properties(workdir, port, sasl_port, ssl_port, controller_port, acls))
    cluster_id = str(uuid.uuid4())  # StorageTool wants base64; use its own generator below
    proc = subprocess.run(
        [_java(), "-cp", f"{libs}/*", "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True,
        text=True,
    )
    if proc.returncode == 0 and proc.stdout.strip():
        cluster_id = proc.stdout.strip().splitlines()[-1]
    proc = subprocess.run(
        [
            _java(),
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(config),
            *(
                arg
                for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512")
                for user, password in SCRAM_USERS.items()
                for arg in ("--add-scram", f"{mech}=[name={user},password={password}]")
            ),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BrokerError(f"kafka-storage format failed:\n{proc.stdout}\n{proc.stderr}")
    del libs
    return _launch(workdir, port, sasl_port, ssl_port, controller_port, ca_file, timeout)


def _launch(
    workdir: Path,
    port: int,
    sasl_port: int,
    ssl_port: int,
    controller_port: int,
    ca_file: Path,
    timeout: float = 120.0,
) -> Broker:
    log4j = workdir / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.file.ref=F\n"
        "appender.file.type=File\nappender.file.name=F\n"
        f"appender.file.fileName={workdir / 'broker.log'}\n"
        "appender.file.layout.type=PatternLayout\n"
        "appender.file.layout.pattern=%d %p %c: %m%n\n"
    )
    out = (workdir / "stdout.log").open("ab")
    proc = subprocess.Popen(
        [
            _java(),
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{LIBS}/*",
            "kafka.Kafka",
            str(workdir / "server.properties"),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    broker = Broker(
        str(workdir),
        proc.pid,
        port,
        sasl_port,
        ssl_port,
        controller_port,
        str(ca_file),
        started_ticks(proc.pid) or 0,
    )
    (workdir / "broker.json").write_text(json.dumps(asdict(broker)))
    _wait_ready(broker, proc, timeout)
    return broker


def _wait_ready(broker: Broker, proc: subprocess.Popen, timeout: float) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})

    def answers() -> bool:
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:
            return False

    tail = partial(_tail, broker)
    wait_until_ready(broker, proc, "Kafka broker", answers, tail, BrokerError, timeout, 0.5)


def _tail(broker: Broker, lines: int = 40) -> str:
    return "".join(
        f"--- {name}\n" + log_tail(Path(broker.workdir) / name, lines)
        for name in ("stdout.log", "broker.log")
        if (Path(broker.workdir) / name).exists()
    )


def load(workdir: Path | None = None) -> Broker | None:
    state = Path(workdir or DEFAULT_RUN_DIR) / "broker.json"
    if not state.exists():
        return None
    return Broker(**json.loads(state.read_text()))


def main() -> None:
    command_line(
        "kafka",
        DEFAULT_RUN_DIR,
        start,
        load,
        where=lambda broker: broker.bootstrap,
        exports=lambda broker: f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}",
        error=BrokerError,
    )


if __name__ == "__main__":
    main()
