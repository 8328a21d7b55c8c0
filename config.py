"""All configuration of the pipeline, read once from the environment.

A dataflow reads them (`Settings.from_env()`) when `python -m bytewax.run` asks
for its `flow`: importing a dataflow module reads nothing. A bad value
raises `ConfigError` with a one-line message naming the variable;
`exit_on_config_error` turns that into a clean exit for `python -m bytewax.run`.

Kafka connection settings use the names Confluent users know
(`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_SASL_USERNAME`, ...) and may be completed by a
librdkafka properties file (`KAFKA_CONFIG_FILE`), such as the `client.properties`
Confluent Cloud hands out, in its librdkafka or its Java flavour (`sasl.jaas.config`,
see `jaas`). Secrets are wrapped in `Secret` so they never print.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

import jaas

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message is one line."""


class Secret:
    """A string that does not show itself in reprs, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# librdkafka properties whose values must never be printed.
_SECRET_PROPERTIES = frozenset(
    {
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.jaas.config",
    }
)

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logging.getLogger(__name__).warning(message)


def _parse_properties(text: str, origin: str) -> dict[str, str]:
    """Parse a Java-style properties file (`key=value`, `#` comments)."""
    props: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise ConfigError(f"{origin}:{number}: expected key=value, got {line[:40]!r}")
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


@dataclass(frozen=True)
class KafkaSettings:
    """Connection to a Kafka cluster (Apache Kafka, Confluent Cloud, Redpanda)."""

    bootstrap_servers: str
    # Everything else librdkafka should get, secrets included (wrapped).
    properties: Mapping[str, str | Secret] = field(default_factory=dict)
    clickstream_topic: str = "clickstream"
    user_clickstream_topic: str = "USER_CLICKSTREAM"
    users_topic: str = "clickstream_users"
    stop_at_end: bool = False
    # Offsets are committed here for Kafka's lag tools only; reads start where the
    # recovery store says. None: clickstream-<dataflow>.
    group_id: str | None = None
    # How often a running dataflow looks for partitions added to its topics; 0: never.
    partition_discovery_s: float = 30.0
    # A partition whose next offset was deleted (retention) stops the run; False: the
    # gap is counted, logged and a dead letter, and reading goes on from the earliest.
    fail_on_data_loss: bool = True

    def librdkafka_config(self) -> dict[str, str]:
        """The config dict for confluent-kafka clients, secrets revealed."""
        conf = {"bootstrap.servers": self.bootstrap_servers}
        for key, value in self.properties.items():
            conf[key] = value.get() if isinstance(value, Secret) else value
        return conf

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSettings:
        props: dict[str, str | Secret] = {}
        config_file = env.get("KAFKA_CONFIG_FILE")
        if config_file:
            path = Path(config_file)
            try:
                text = path.read_text()
            except OSError as ex:
                raise ConfigError(f"KAFKA_CONFIG_FILE: cannot read {path}: {ex.strerror}") from None
            for key, value in _parse_properties(text, str(path)).items():
                if jaas.is_java_only(key):
                    _warn_once(f"KAFKA_CONFIG_FILE: {key} is a Java client setting; ignored")
                    continue
                props[key] = Secret(value) if key in _SECRET_PROPERTIES else value
        # Java's singular name; librdkafka's is sasl.mechanisms
        if "sasl.mechanism" in props:
            props.setdefault("sasl.mechanisms", props.pop("sasl.mechanism"))
        # the variable wins over the file's line, which librdkafka must not see either way
        from_file = props.pop("sasl.jaas.config", None)
        jaas_config = env.get("KAFKA_SASL_JAAS_CONFIG") or from_file
        if jaas_config:
            mechanism = env.get("KAFKA_SASL_MECHANISM") or props.get("sasl.mechanisms")
            try:
                translated = jaas.translate(
                    jaas_config.get() if isinstance(jaas_config, Secret) else jaas_config,
                    str(mechanism) if mechanism else None,
                )
            except jaas.JaasError as ex:
                raise ConfigError(str(ex)) from None
            for key, value in translated.items():
                props[key] = Secret(value) if key in _SECRET_PROPERTIES else value
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or str(props.pop("bootstrap.servers", ""))
        props.pop("bootstrap.servers", None)
        if not bootstrap:
            raise ConfigError(
                "CLICKSTREAM_SOURCE=kafka needs KAFKA_BOOTSTRAP_SERVERS "
                "(or bootstrap.servers in KAFKA_CONFIG_FILE)"
            )
        for var, prop in (
            ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
            ("KAFKA_SASL_MECHANISM", "sasl.mechanisms"),
            ("KAFKA_SASL_USERNAME", "sasl.username"),
        ):
            if env.get(var):
                props[prop] = env[var]
        if env.get("KAFKA_SASL_PASSWORD"):
            props["sasl.password"] = Secret(env["KAFKA_SASL_PASSWORD"])
        protocol = str(props.get("security.protocol", "PLAINTEXT")).upper()
        if protocol not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of "
                "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            )
        if protocol.startswith("SASL") and "sasl.username" not in props:
            mech = str(props.get("sasl.mechanisms", "PLAIN")).upper()
            if mech in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}:
                raise ConfigError(
                    f"security.protocol={protocol} with {mech} needs KAFKA_SASL_USERNAME "
                    "and KAFKA_SASL_PASSWORD"
                )
        return cls(
            bootstrap_servers=bootstrap,
            properties=props,
            clickstream_topic=env.get("CLICKSTREAM_TOPIC", "clickstream"),
            user_clickstream_topic=env.get("USER_CLICKSTREAM_TOPIC", "USER_CLICKSTREAM"),
            users_topic=env.get("CLICKSTREAM_USERS_TOPIC", "clickstream_users"),
            stop_at_end=_parse_bool(env, "KAFKA_STOP_AT_END", False),
            group_id=env.get("KAFKA_GROUP_ID", "").strip() or None,
            partition_discovery_s=_parse(
                env, "CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL", float, 30.0, minimum=0
            ),
            fail_on_data_loss=_parse_bool(env, "CLICKSTREAM_FAIL_ON_DATA_LOSS", True),
        )

    def group(self, dataflow: str) -> str:
        """The consumer group a dataflow commits its offsets to."""
        return self.group_id or f"clickstream-{dataflow}"


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
    # datagen: events per second (per dataflow) and how many (None: forever).
    datagen_rate: float = 200.0
    datagen_count: int | None = None
    # A partition that reads nothing for this long stops holding the watermark back.
    idle_timeout_s: float = 10.0
    # A record stamped further ahead of the wall clock than this is a dead letter (a
    # broken producer clock); 1 h is Kafka 4's broker default for the same check
    # (log.message.timestamp.after.max.ms).
    max_future_skew_s: float = 3600.0
    # Buffered output rows are written at least this often (the seed's trigger was 4 s).
    flush_interval_s: float = 4.0
    flush_rows: int = 500_000
    # Delta: a sink partition compacts an hour partition once it writes two hours past it.
    delta_compact_closed_hours: bool = False
    # Records per input batch; bigger is faster, any value gives the same tables.
    batch_size: int = 2_000
    kafka: KafkaSettings | None = None
    # /metrics and /health on this port (+ the process id of a cluster); None: off.
    metrics_port: int | None = None
    # Keep /metrics up this long after a bounded run ends (its last scrape).
    metrics_linger_s: float = 0.0
    # /health turns 503 when input is waiting and nothing was read for this long.
    stall_timeout_s: float = 60.0
    # Storage errors are retried with backoff; past this long /health turns 503.
    storage_retry_s: float = 300.0
    # One writer per dataflow: a lease not renewed for this long may be taken over.
    lease_timeout_s: float = 30.0
    # Test aid (CLICKSTREAM_TEST_SLOW_WRITES): seconds each output file stays half-written,
    # and how long each record written to Kafka waits; so crash tests can kill a run mid-write.
    test_slow_writes_s: float = 0.0

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
        return cls(
            source=source,
            replay_path=replay_path,
            output=output,
            table_format=table_format,  # type: ignore[arg-type]
            datagen_rate=_parse(env, "CLICKSTREAM_DATAGEN_RATE", float, 200.0, minimum=0.001),
            datagen_count=_parse(env, "CLICKSTREAM_DATAGEN_COUNT", int, None, minimum=0),
            idle_timeout_s=_parse(env, "CLICKSTREAM_IDLE_TIMEOUT", float, 10.0, minimum=0.1),
            max_future_skew_s=_parse(env, "CLICKSTREAM_MAX_FUTURE_SKEW", float, 3600.0, minimum=0),
            flush_interval_s=_parse(env, "CLICKSTREAM_FLUSH_INTERVAL", float, 4.0, minimum=0.1),
            flush_rows=_parse(env, "CLICKSTREAM_FLUSH_ROWS", int, 500_000, minimum=1),
            delta_compact_closed_hours=_parse_bool(env, "CLICKSTREAM_DELTA_COMPACT", False),
            batch_size=_parse(env, "CLICKSTREAM_BATCH_SIZE", int, 2_000, minimum=1),
            kafka=kafka,
            metrics_port=_parse(env, "CLICKSTREAM_METRICS_PORT", int, None, minimum=0),
            metrics_linger_s=_parse(env, "CLICKSTREAM_METRICS_LINGER", float, 0.0, minimum=0),
            stall_timeout_s=_parse(env, "CLICKSTREAM_STALL_TIMEOUT", float, 60.0, minimum=0.1),
            storage_retry_s=_parse(
                env, "CLICKSTREAM_STORAGE_RETRY_TIMEOUT", float, 300.0, minimum=0
            ),
            lease_timeout_s=_parse(env, "CLICKSTREAM_LEASE_TIMEOUT", float, 30.0, minimum=1),
            test_slow_writes_s=_parse(env, "CLICKSTREAM_TEST_SLOW_WRITES", float, 0.0, minimum=0),
        )


def _parse(
    env: Mapping[str, str],
    var: str,
    kind: Callable[[str], T],
    default: T,
    *,
    minimum: float,
) -> T:
    raw = env.get(var)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise ConfigError(f"{var}: expected {name}, got {raw!r}") from None
    if value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{var}: must be at least {minimum}, got {raw!r}")
    return value


def _parse_bool(env: Mapping[str, str], var: str, default: bool) -> bool:
    raw = env.get(var, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{var}: expected true or false, got {raw!r}")


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit, without a traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def stop(message: str) -> NoReturn:
    """Stop the whole process with one line, from a worker thread, where raising would end
    in Bytewax's panic and traceback. The recovery store keeps the last committed epoch."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(2)


def one_line_panics(dataflow: str) -> None:
    """Bytewax ends a process whose cluster lost another process with a Rust panic raised
    as a Python traceback (`PanicException: Send thread panic`); print one line instead."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: object) -> None:
        if kind.__name__ != "PanicException":
            previous(kind, value, tb)  # type: ignore[arg-type]
            return
        text = " ".join(str(value).split())[:200]
        if "Send thread panic" in text or "Recv thread panic" in text:
            what = (
                "lost its connection to another process of the cluster (stopped, killed or "
                "cut off); restart every process: they resume from the last committed epoch"
            )
        else:
            what = "Bytewax stopped the run"
        print(f"error: dataflow {dataflow}: {what} ({text})", file=sys.stderr, flush=True)

    sys.excepthook = hook


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a `ConfigError` into `error: ...` on stderr and exit status 2."""
    try:
        yield
    except ConfigError as ex:
        fail(str(ex))
