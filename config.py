"""All configuration of the pipeline, read once from the environment.

A dataflow reads them (`Settings.from_env()`) when `python -m bytewax.run` asks
for its `flow`: importing a dataflow module reads nothing. A bad value
raises `ConfigError` with a one-line message naming the variable;
`process.exit_on_config_error` turns that into a clean exit for `python -m bytewax.run`.

How a setting is declared and read is `setting`; Kafka connection settings are
`kafka_client.settings.KafkaSettings`. Secrets are wrapped in `Secret` so they never
print.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kafka_client.settings import KafkaSettings
from setting import ConfigError, declared, parse, setting, settings_table


def slow_writes_for_tests() -> float:
    """A test aid, not a setting: `CLICKSTREAM_TEST_SLOW_WRITES` seconds each output file
    stays half-written, and each record written to Kafka waits, so crash tests can kill
    a run mid-write. 0 outside the tests."""
    return parse(os.environ, "CLICKSTREAM_TEST_SLOW_WRITES", float, 0.0, minimum=0)


def slow_reads_for_tests() -> float:
    """A test aid, not a setting: `CLICKSTREAM_TEST_SLOW_READS` seconds each record read
    from a replay or Kafka waits, so a fault test's run lasts as long as its faults need
    however fast the pipeline gets (its pace is set, not the machine's). 0 outside the
    tests."""
    return parse(os.environ, "CLICKSTREAM_TEST_SLOW_READS", float, 0.0, minimum=0)


def tables_folder(env: Mapping[str, str] | None = None) -> str | None:
    """`CLICKSTREAM_TABLES` alone, for the tools that read the tables a dataflow wrote."""
    return parse(os.environ if env is None else env, "CLICKSTREAM_TABLES", str, None, minimum=None)


def streams_folder(env: Mapping[str, str] | None = None) -> str | None:
    """`CLICKSTREAM_STREAMS` alone, for the tools that read the tables a dataflow wrote."""
    return parse(os.environ if env is None else env, "CLICKSTREAM_STREAMS", str, None, minimum=None)


def registry_kafka(env: Mapping[str, str] | None = None) -> KafkaSettings | None:
    """The Kafka settings, for the tools that read the tables of streams whose columns
    are the Schema Registry's: None without a Kafka cluster and a registry set."""
    kafka = tool_kafka(env)
    return kafka if kafka is not None and kafka.registry is not None else None


def tool_kafka(env: Mapping[str, str] | None = None) -> KafkaSettings | None:
    """The Kafka settings of the environment, for the tools that read topics (`just
    query` over a stream); None when no cluster is set."""
    env = os.environ if env is None else env
    if not env.get("KAFKA_BOOTSTRAP_SERVERS") and not env.get("KAFKA_CONFIG_FILE"):
        return None
    return KafkaSettings.from_env(env)


def output_folder(env: Mapping[str, str] | None = None) -> str:
    """`CLICKSTREAM_OUTPUT` alone (default `./output`), for the tools that read the tables."""
    env = os.environ if env is None else env
    return env.get("CLICKSTREAM_OUTPUT", "").strip() or "./output"


def dashboard_settings(env: Mapping[str, str] | None = None) -> tuple[int, float]:
    """`CLICKSTREAM_DASHBOARD_PORT` (8050) and `CLICKSTREAM_DASHBOARD_REFRESH` (5 s)."""
    env = os.environ if env is None else env
    port = parse(env, "CLICKSTREAM_DASHBOARD_PORT", int, 8050, minimum=0)
    refresh = parse(env, "CLICKSTREAM_DASHBOARD_REFRESH", float, 5.0, minimum=0.1)
    return port, refresh


def gcs_emulator(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The GCS emulator's endpoints, as Google's libraries name them:
    `STORAGE_EMULATOR_HOST` (JSON API) and `STORAGE_EMULATOR_XML_HOST` (XML API, for
    deltalake; default the former), each as an http URL; None when unset."""
    env = os.environ if env is None else env

    def url(value: str | None) -> str | None:
        if not value:
            return None
        return value if value.startswith("http") else f"http://{value}"

    json_api = url(env.get("STORAGE_EMULATOR_HOST"))
    return json_api, url(env.get("STORAGE_EMULATOR_XML_HOST")) or json_api


def sql_cache_folder(env: Mapping[str, str] | None = None) -> Path | None:
    """`CLICKSTREAM_SQL_CACHE`: where compiled tables are kept (`sql.table`), so a start
    does not parse SQL it has parsed before. Default `$XDG_CACHE_HOME/clickstream/sql`
    (`~/.cache/clickstream/sql`); `off` compiles at every start."""
    env = os.environ if env is None else env
    folder = parse(env, "CLICKSTREAM_SQL_CACHE", str, None, minimum=None)
    if folder is not None:
        return None if folder.strip().lower() == "off" else Path(folder)
    base = env.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory (a container's nobody): compile each start
            return None
    return Path(base) / "clickstream" / "sql"


SourceKind = Literal["datagen", "replay", "kafka"]


@dataclass(frozen=True)
class Settings:
    """Everything a dataflow needs to know about its environment."""

    source: SourceKind = "datagen"
    # A kcat -J dump, or a directory holding clickstream.jsonl and user_clickstream.jsonl.
    replay_path: Path | None = None
    output: str = "./output"
    # How tables are stored: hive-partitioned Parquet files, or Delta Lake tables.
    table_format: Literal["parquet", "delta"] = "parquet"
    kafka: KafkaSettings | None = None
    # The rest is declared once each: variable, default, bounds and doc (`setting`).
    tables: str | None = setting(
        "CLICKSTREAM_TABLES",
        None,
        "the folder of the tables' `.sql` files, one table per file; unset: the repo's `tables/`",
    )
    streams: str | None = setting(
        "CLICKSTREAM_STREAMS",
        None,
        "the folder of the streams' `.sql` declarations, one stream per file; unset: the "
        "repo's `streams/`",
    )
    stream: str | None = setting(
        "CLICKSTREAM_STREAM",
        None,
        "`dataflows.tables`: the stream whose tables it computes (a file of the streams folder)",
    )
    datagen_rate: float = setting(
        "CLICKSTREAM_DATAGEN_RATE", 200.0, "datagen: records per second, per dataflow", 0.001
    )
    datagen_count: int | None = setting(
        "CLICKSTREAM_DATAGEN_COUNT", None, "datagen: how many records; unset: forever", 0
    )
    idle_timeout_s: float = setting(
        "CLICKSTREAM_IDLE_TIMEOUT",
        10.0,
        "a partition that reads nothing for this long stops holding the watermark back",
        0.1,
    )
    max_future_skew_s: float = setting(
        "CLICKSTREAM_MAX_FUTURE_SKEW",
        3600.0,
        "a record stamped further ahead of the wall clock is a dead letter (a broken "
        "producer clock; 1 h is Kafka 4's broker default for the same check)",
        0,
    )
    flush_interval_s: float = setting(
        "CLICKSTREAM_FLUSH_INTERVAL",
        4.0,
        "buffered output rows are written at least this often (the seed's trigger was 4 s)",
        0.1,
    )
    flush_rows: int = setting(
        "CLICKSTREAM_FLUSH_ROWS", 500_000, "... or once this many rows are buffered", 1
    )
    delta_compact_closed_hours: bool = setting(
        "CLICKSTREAM_DELTA_COMPACT",
        False,
        "Delta: each sink partition compacts an hour partition once it writes two hours past it",
    )
    batch_size: int = setting(
        "CLICKSTREAM_BATCH_SIZE",
        2_000,
        "records per input batch; bigger is faster, any value gives the same tables",
        1,
    )
    replay_parts: int | None = setting(
        "CLICKSTREAM_REPLAY_PARTS",
        None,
        "a replay file is read as this many parts, spread over the workers; unset: one a "
        "worker of a cluster (`-w` times the processes), one for a single process; a resume "
        "keeps its store's parts",
        1,
    )
    metrics_port: int | None = setting(
        "CLICKSTREAM_METRICS_PORT",
        None,
        "`/metrics` and `/health` on this port (+ N for `-i N`); unset: off",
        0,
    )
    metrics_linger_s: float = setting(
        "CLICKSTREAM_METRICS_LINGER",
        0.0,
        "keep `/metrics` up this long after a bounded run ends, for a last scrape",
        0,
    )
    stall_timeout_s: float = setting(
        "CLICKSTREAM_STALL_TIMEOUT",
        60.0,
        "`/health` turns 503 when input waits and nothing was read for this long",
        0.1,
    )
    storage_retry_s: float = setting(
        "CLICKSTREAM_STORAGE_RETRY_TIMEOUT",
        300.0,
        "storage errors are retried with backoff; past this, `/health` turns 503 (retries go on)",
        0,
    )
    lease_timeout_s: float = setting(
        "CLICKSTREAM_LEASE_TIMEOUT",
        30.0,
        "one writer per dataflow: a lease not renewed for this long may be taken over",
        1,
    )

    alertmanager_url: str | None = setting(
        "CLICKSTREAM_ALERTMANAGER_URL",
        None,
        "rows of alert tables are posted to this Alertmanager (API v2); unset: no alerts",
    )
    alert_tables: str = setting(
        "CLICKSTREAM_ALERT_TABLES",
        "errors_per_min_alert",
        "the tables whose rows are alerts, comma-separated",
    )
    alert_max_age_s: float = setting(
        "CLICKSTREAM_ALERT_MAX_AGE",
        900.0,
        "a row whose window ended longer ago than this is not posted (a backfill pages no one)",
        0,
    )
    alert_resolve_after_s: float | None = setting(
        "CLICKSTREAM_ALERT_RESOLVE_AFTER",
        None,
        "an alert resolves this long after its last row was posted; unset: two slides "
        "(tumbling: lengths; sessions: gaps) plus the flush interval",
        0.1,
    )
    alert_buffer: int = setting(
        "CLICKSTREAM_ALERT_BUFFER",
        10_000,
        "alerts a sink partition holds while Alertmanager is away; beyond, the oldest drop",
        1,
    )

    def replay_file(self, topic_file: str) -> Path:
        """The dump a dataflow replays: the path itself, or `topic_file` inside it."""
        assert self.replay_path is not None
        if not self.replay_path.is_dir():
            return self.replay_path
        path = self.replay_path / topic_file
        if not path.is_file():
            raise ConfigError(f"CLICKSTREAM_SOURCE: {path} does not exist")
        return path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        source_spec = env.get("CLICKSTREAM_SOURCE", "datagen").strip()
        replay_path = None
        kafka = None
        if source_spec == "datagen":
            source: SourceKind = "datagen"
        elif source_spec.startswith("replay:"):
            source = "replay"
            replay_path = Path(source_spec.removeprefix("replay:"))
            if not replay_path.exists():
                raise ConfigError(f"CLICKSTREAM_SOURCE: replay path {replay_path} does not exist")
        elif source_spec == "kafka":
            source = "kafka"
            kafka = KafkaSettings.from_env(env)
        else:
            raise ConfigError(
                f"CLICKSTREAM_SOURCE: {source_spec!r} is not one of datagen, replay:PATH, kafka"
            )
        output = env.get("CLICKSTREAM_OUTPUT", "./output").strip()
        if not output:
            raise ConfigError("CLICKSTREAM_OUTPUT: must not be empty")
        table_format = env.get("CLICKSTREAM_TABLE_FORMAT", "parquet").strip().lower()
        if table_format not in ("parquet", "delta"):
            raise ConfigError(
                f"CLICKSTREAM_TABLE_FORMAT: {table_format!r} is not one of parquet, delta"
            )
        url = env.get("CLICKSTREAM_ALERTMANAGER_URL", "").strip()
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"CLICKSTREAM_ALERTMANAGER_URL: {url!r} is not an http:// or https:// URL"
            )
        return cls(
            source=source,
            replay_path=replay_path,
            output=output,
            table_format=table_format,  # type: ignore[arg-type]
            kafka=kafka,
            **declared(cls, env),
        )


DATAFLOWS = ("clickstream", "user_clickstream", "enrich", "tables")
"""The dataflows `deploy.entrypoint` starts, as modules of `dataflows`."""

_ORDINAL = re.compile(r"^(?P<set>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<ordinal>\d+)$")


@dataclass(frozen=True)
class Launch:
    """The facts `deploy.entrypoint` turns into `python -m bytewax.run` flags: which
    dataflow, and where this process is in its cluster (a Kubernetes StatefulSet's pod
    `clickstream-2` of `CLICKSTREAM_REPLICAS`, behind the headless Service
    `CLICKSTREAM_SERVICE`), and the recovery store."""

    dataflow: str
    replicas: int = 1
    ordinal: int = 0
    statefulset: str = ""
    service: str = ""
    port: int = 9999
    workers: int = 1
    recovery: str | None = None
    recovery_parts: int = 1
    snapshot_s: float = 10.0
    backup_s: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], argv: Sequence[str] = ()) -> Launch:
        dataflow = (argv[0] if argv else env.get("CLICKSTREAM_DATAFLOW", "")).strip()
        if dataflow not in DATAFLOWS:
            raise ConfigError(
                f"CLICKSTREAM_DATAFLOW: {dataflow or 'unset'}; one of {', '.join(DATAFLOWS)}"
            )
        replicas = parse(env, "CLICKSTREAM_REPLICAS", int, 1, minimum=1)
        workers = parse(env, "CLICKSTREAM_WORKERS", int, 1, minimum=1)
        facts: dict[str, Any] = {
            "dataflow": dataflow,
            "replicas": replicas,
            "workers": workers,
            "port": parse(env, "CLICKSTREAM_CLUSTER_PORT", int, 9999, minimum=1),
            "recovery": env.get("CLICKSTREAM_RECOVERY_DIR", "").strip() or None,
            "recovery_parts": parse(
                env, "CLICKSTREAM_RECOVERY_PARTITIONS", int, replicas * workers, minimum=1
            ),
            "snapshot_s": parse(env, "CLICKSTREAM_SNAPSHOT_INTERVAL", float, 10.0, minimum=0.1),
            "backup_s": parse(env, "CLICKSTREAM_BACKUP_INTERVAL", float, 0.0, minimum=0),
        }
        if replicas > 1:
            hostname = env.get("HOSTNAME", "").strip()
            found = _ORDINAL.match(hostname)
            if found is None:
                raise ConfigError(
                    f"HOSTNAME: {hostname or 'unset'} is not a StatefulSet pod's name "
                    f"(name-ordinal), needed for CLICKSTREAM_REPLICAS={replicas}"
                )
            ordinal = int(found.group("ordinal"))
            if ordinal >= replicas:
                raise ConfigError(
                    f"HOSTNAME: {hostname} is pod {ordinal}, but CLICKSTREAM_REPLICAS is "
                    f"{replicas}: scale the StatefulSet and the variable together"
                )
            statefulset = found.group("set")
            service = env.get("CLICKSTREAM_SERVICE", "").strip() or statefulset
            facts |= {"ordinal": ordinal, "statefulset": statefulset, "service": service}
        if facts["recovery_parts"] < replicas * workers:
            raise ConfigError(
                f"CLICKSTREAM_RECOVERY_PARTITIONS: {facts['recovery_parts']} is fewer than "
                f"the {replicas * workers} workers of the cluster"
            )
        return cls(**facts)

    def addresses(self) -> list[str]:
        """Every process's address, as the headless Service's DNS names them."""
        return [f"{self.statefulset}-{i}.{self.service}:{self.port}" for i in range(self.replicas)]


DEFAULTS = Settings()
"""Every setting at its default, for constructors that take one (never repeat a default)."""


if __name__ == "__main__":
    # `python -m config`: the table of declared settings, for docs/configuration.md
    print(settings_table(Settings, KafkaSettings))
