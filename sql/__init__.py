"""Tables declared in SQL: a folder of `.sql` files, one table per file, named after it.

```python
from sql import load_tables

for t in load_tables("tables"):            # every table, checked
    print(t.name, t.stream, t.table.columns)
```

A table reads one stream (`FROM`), declared in the streams folder (`sql.streams`); a
dataflow computes the tables whose `FROM` names its stream. A file
that uses what is not supported is one `ConfigError` line naming the file, the line in
it and what is not supported (see `sql.compiler` for the subset, docs/sql.md for users).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import msgspec

from events.streams import Stream, event_type
from kafka_client.settings import KafkaSettings
from operators.shards import DEFAULT_SHARDS
from setting import ConfigError
from sources.schemas import with_registry_columns
from sql.errors import SqlError
from sql.files import sql_files
from sql.legacy import EARLIER
from sql.streams import REPO_STREAMS, load_streams
from sql.table import SqlTable, compile_table
from storage.tables import DEAD_LETTERS, LATE_EVENTS, Table

__all__ = [
    "REPO_STREAMS",
    "REPO_TABLES",
    "SqlTable",
    "all_streams",
    "event_types",
    "load_streams",
    "load_tables",
    "output_tables",
]


def all_streams(folder: str | Path | None = None) -> dict[str, Stream]:
    """The repo's streams and those of `folder` (`CLICKSTREAM_STREAMS`), which may also
    declare one of the repo's anew: a folder of your own adds to the repo's two."""
    streams = load_streams(REPO_STREAMS)
    if folder is not None and Path(folder).resolve() != REPO_STREAMS:
        streams |= load_streams(folder)
    return streams


def event_types(streams: dict[str, Stream]) -> dict[str, type[msgspec.Struct]]:
    """The events of each stream, by the name `FROM` gives it: the columns SQL sees."""
    return {name: event_type(stream) for name, stream in streams.items()}


def __getattr__(name: str) -> dict[str, type[msgspec.Struct]]:
    if name == "STREAMS":  # the repo's streams' events, read when asked for (tests, benches)
        return event_types(load_streams(REPO_STREAMS))
    raise AttributeError(name)


REPO_TABLES = Path(__file__).resolve().parents[1] / "tables"
"""The notebook's four tables: the default of `CLICKSTREAM_TABLES`."""

_RESERVED = frozenset({"late_events", "dead_letters"})
# the stream a table reads, as a first look (the compiler reads it exactly)
_FROM = re.compile(r"\bFROM\s+`?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def load_tables(
    folder: str | Path = REPO_TABLES,
    shards: int = DEFAULT_SHARDS,
    streams: dict[str, Stream] | None = None,
    only: str | None = None,
) -> list[SqlTable]:
    """Every table of `folder`, by file name, over `streams` (default: the repo's), or
    only those that read the stream `only`; `ConfigError` for the first one that is not
    supported."""
    streams = load_streams(REPO_STREAMS) if streams is None else streams
    events = event_types(streams)
    tables = []
    for path in sql_files(folder, "CLICKSTREAM_TABLES", "table", _RESERVED):
        name = path.stem
        text = path.read_text()
        reads = _FROM.search(_COMMENT.sub(" ", text))
        stream = streams.get(reads.group(1).lower()) if reads else None
        if only is not None and stream is not None and stream.name != only:
            continue  # another dataflow's table, checked when that one starts
        if stream is not None and not stream.columns:
            raise ConfigError(
                f"{path}: stream {stream.name} takes its columns from the Schema Registry, "
                "which this command does not ask: set KAFKA_BOOTSTRAP_SERVERS and "
                "KAFKA_SCHEMA_REGISTRY_URL, or declare the columns"
            )
        try:
            table = compile_table(text, name, events, shards)
        except SqlError as ex:
            raise ConfigError(f"{path}:{ex.line}: {ex.message}") from None
        earlier = EARLIER.get(name)
        if earlier is not None and _earlier_definition(name, shards) == table.definition:
            table.earlier.append(earlier.definition)
        tables.append(table)
    return tables


def output_tables(
    folder: str | Path | None = None,
    streams_folder: str | Path | None = None,
    kafka: KafkaSettings | None = None,
) -> list[Table]:
    """Every table a dataflow writes with the tables of `folder` over the streams of
    `streams_folder` (default: the repo's), late events and dead letters included: what
    the tools read. Streams declared without columns take them from `kafka`'s registry."""
    streams = all_streams(streams_folder)
    if kafka is not None and kafka.registry is not None:
        streams = with_registry_columns(streams, kafka)
    tables = load_tables(folder or REPO_TABLES, streams=streams)
    return [t.table for t in tables] + [LATE_EVENTS, DEAD_LETTERS]


@cache
def _earlier_definition(name: str, shards: int) -> str:
    """The definition of the SQL that computes what table `name` computed before tables
    were SQL (compiled once per process)."""
    events = event_types(load_streams(REPO_STREAMS))
    return compile_table(EARLIER[name].sql, name, events, shards).definition
