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
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

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


def setting(var: str, default: T, doc: str, minimum: float | None = None) -> T:
    """A setting read from the environment variable `var`: its default, lowest value and
    doc, declared once, next to its field. `declared` reads it, `settings_table` documents
    it. The field's type says how to parse it (int, float, bool; `| None`: may be unset)."""
    found: T = field(default=default, metadata={"var": var, "doc": doc, "minimum": minimum})
    return found


def declared(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """The values of `cls`'s declared settings found in `env`, parsed and checked; a
    `ConfigError` naming the variable for a bad one."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if "var" not in f.metadata:
            continue
        kind = _KINDS[str(f.type).split("|")[0].strip()]
        var, minimum = f.metadata["var"], f.metadata["minimum"]
        if kind is bool:
            values[f.name] = _parse_bool(env, var, bool(f.default))
        else:
            values[f.name] = _parse(env, var, kind, f.default, minimum=minimum)
    return values


_KINDS: dict[str, Callable[[str], object]] = {"int": int, "float": float, "bool": bool, "str": str}


def settings_table(*classes: type) -> str:
    """The declared settings of `classes` as Markdown table rows (variable, default, doc),
    as docs/configuration.md shows them (a test keeps the two the same)."""
    rows = []
    for cls in classes:
        for f in fields(cls):
            if "var" in f.metadata:
                value = str(f.default).lower() if isinstance(f.default, bool) else f.default
                default = "unset" if f.default is None else f"`{value}`"
                rows.append(f"| `{f.metadata['var']}` | {default} | {f.metadata['doc']} |")
    return "\n".join(rows)


def slow_writes_for_tests() -> float:
    """A test aid, not a setting: `CLICKSTREAM_TEST_SLOW_WRITES` seconds each output file
    stays half-written, and each record written to Kafka waits, so crash tests can kill
    a run mid-write. 0 outside the tests."""
    return _parse(os.environ, "CLICKSTREAM_TEST_SLOW_WRITES", float, 0.0, minimum=0)


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
            kafka=kafka,
            **declared(cls, env),
        )


def _parse(
    env: Mapping[str, str],
    var: str,
    kind: Callable[[str], T],
    default: T,
    *,
    minimum: float | None,
) -> T:
    raw = env.get(var)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise ConfigError(f"{var}: expected {name}, got {raw!r}") from None
    if minimum is not None and value < minimum:  # type: ignore[operator]
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


_STOPPING = threading.Lock()


def stop(message: str) -> NoReturn:
    """Stop the whole process with one line, from a worker thread, where raising would end
    in Bytewax's panic and traceback. The recovery store keeps the last committed epoch.

    Several threads may stop at once (the lease's renewal thread and a writer's fence
    both find the lease lost): the first prints its line and exits, the others wait
    for that exit, so the user reads one line."""
    _STOPPING.acquire()  # never released: os._exit ends every thread
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


if __name__ == "__main__":
    # `python -m config`: the table of declared settings, for docs/configuration.md
    from kafka_client.settings import KafkaSettings

    print(settings_table(Settings, KafkaSettings))
