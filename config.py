"""All configuration of the pipeline, read once from the environment.

A dataflow reads them (`Settings.from_env()`) when `python -m bytewax.run` asks
for its `flow`: importing a dataflow module reads nothing. A bad value
raises `ConfigError` with a one-line message naming the variable;
`exit_on_config_error` turns that into a clean exit for `python -m bytewax.run`.

Kafka connection settings are `kafka_client.settings.KafkaSettings`. Secrets are
wrapped in `Secret` so they never print.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn, TypeVar

if TYPE_CHECKING:
    from kafka_client.settings import KafkaSettings

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
            from kafka_client.settings import KafkaSettings  # imports this module

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
