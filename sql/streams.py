"""Streams declared in SQL: a folder of `.sql` files, one `CREATE STREAM` each, in
ksqlDB's words (docs/streams.md):

```sql
CREATE STREAM orders (
    order_id BIGINT, country STRING, amount DOUBLE, ts STRING
) WITH (KAFKA_TOPIC = 'orders', VALUE_FORMAT = 'JSON',
        TIMESTAMP = 'ts', TIMESTAMP_FORMAT = 'iso8601');
```

```python
streams = load_streams("streams")        # {"orders": Stream(...), ...}, checked
```

The stream is named after its file, as a table is. sqlglot reads the declaration (as a
`CREATE TABLE ... WITH (...)`: the word STREAM is the only difference); the result is
kept in the compile cache (`CLICKSTREAM_SQL_CACHE`) as JSON, so a start whose
declarations were read before imports no SQL parser. A declaration that says what is
not supported is one `ConfigError` line naming the file and the line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from config import sql_cache_folder
from events.streams import (
    TIME_FORMATS,
    VALUE_FORMATS,
    Column,
    EventTime,
    Stream,
    is_column_name,
)
from setting import ConfigError
from sql.errors import SqlError, parse
from sql.files import sql_files
from sql.table import compiler_fingerprint, keep

if TYPE_CHECKING:
    from sqlglot import exp

log = logging.getLogger(__name__)

REPO_STREAMS = Path(__file__).resolve().parents[1] / "streams"
"""The repo's two streams: the default of `CLICKSTREAM_STREAMS`."""

_CREATE_STREAM = re.compile(r"\A((?:\s|--[^\n]*\n|/\*.*?\*/)*CREATE\s+)STREAM\b", re.I | re.S)
# ksqlDB's and Spark's spellings of the column types
_TYPE_NAMES = {
    "STRING": "string",
    "VARCHAR": "string",
    "TEXT": "string",
    "INT": "int",
    "INTEGER": "int",
    "BIGINT": "bigint",
    "DOUBLE": "double",
    "FLOAT": "double",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp",
    "TIMESTAMPTZ": "timestamp",
}
_OPTIONS = ("KAFKA_TOPIC", "VALUE_FORMAT", "TIMESTAMP", "TIMESTAMP_FORMAT")


def load_streams(folder: str | Path = REPO_STREAMS) -> dict[str, Stream]:
    """Every stream of `folder`, by name; `ConfigError` for the first one that is not
    supported."""
    streams = {}
    for path in sql_files(folder, "CLICKSTREAM_STREAMS", "stream"):
        name = path.stem
        try:
            streams[name.lower()] = declared_stream(path.read_text(), name.lower(), str(path))
        except SqlError as ex:
            raise ConfigError(f"{path}:{ex.line}: {ex.message}") from None
    return streams


def declared_stream(text: str, name: str, path: str = "") -> Stream:
    """The stream `name` that the declaration `text` says; `SqlError` for anything that is
    not supported. From the cache when this text was read before."""
    folder = sql_cache_folder()
    digest = hashlib.sha256(compiler_fingerprint())
    digest.update(repr((text, name)).encode())
    cached = None if folder is None else folder / f"{digest.hexdigest()[:32]}.json"
    if cached is not None:
        try:
            found = msgspec.json.decode(cached.read_bytes(), type=Stream)
            return dataclasses.replace(found, path=path)
        except OSError:
            pass
        except Exception as ex:  # a damaged file: read anew
            log.warning("sql: %s is not a read stream (%s); reading %s again", cached, ex, name)
    stream = _read(text, name, path)
    if cached is not None:
        keep(cached, msgspec.json.encode(stream).decode())
    return stream


def _read(text: str, name: str, path: str) -> Stream:
    from sqlglot import exp  # only for a declaration that is new

    create = _CREATE_STREAM.match(text)
    if create is None:
        raise SqlError(None, "a stream is declared with CREATE STREAM name (columns) WITH (...)")
    # sqlglot reads ksqlDB's CREATE STREAM as a CREATE TABLE: the same length keeps lines
    text = create.group(1) + "TABLE " + text[create.end() :]
    statements = parse(text, "spark")
    if len(statements) != 1 or not isinstance(statements[0], exp.Create):
        raise SqlError(None, "one CREATE STREAM per file")
    create_node = statements[0]
    schema = create_node.this
    declared = schema.this.name if isinstance(schema, exp.Schema) else schema.name
    if declared.lower() != name:
        raise SqlError(
            create_node, f"the file declares {declared}; a stream is named after its file ({name})"
        )
    columns = _columns(schema)
    options = _options(create_node)
    topic = options.pop("KAFKA_TOPIC", None)
    if topic is None:
        raise SqlError(create_node, "WITH (KAFKA_TOPIC = '...') is missing: which topic?")
    value_format = options.pop("VALUE_FORMAT", None)
    if value_format is not None:
        value_format = value_format.lower()
        if value_format not in VALUE_FORMATS:
            raise SqlError(
                create_node,
                f"VALUE_FORMAT {value_format!r} is not one of {', '.join(VALUE_FORMATS)}",
            )
    event_time = _event_time(create_node, options, columns, value_format)
    if event_time is not None and value_format is None:
        value_format = "json"  # a payload's time is read from JSON
    if not columns and value_format in (None, "json", "auto"):
        raise SqlError(
            create_node,
            "no columns: only a registry format (VALUE_FORMAT 'AVRO', 'JSON_SR' or "
            "'PROTOBUF') takes its columns from the registry",
        )
    return Stream(name, topic, tuple(columns), value_format, event_time, path)


def _columns(schema: exp.Expr) -> list[Column]:
    from sqlglot import exp

    columns: list[Column] = []
    seen: set[str] = set()
    for node in schema.expressions if isinstance(schema, exp.Schema) else []:
        if not isinstance(node, exp.ColumnDef):
            raise SqlError(node, f"{node.sql('spark')}: only columns are declared here")
        column = node.name
        kind = node.args.get("kind")
        written = kind.sql("spark").upper() if kind is not None else ""
        found = _TYPE_NAMES.get(kind.this.name if kind is not None else "")
        if found is None or (kind is not None and kind.expressions):
            raise SqlError(
                node,
                f"column {column}: type {written or 'missing'} is not one of STRING, INT, "
                "BIGINT, DOUBLE, BOOLEAN, TIMESTAMP",
            )
        if not is_column_name(column):
            raise SqlError(node, f"column {column!r}: a column name is letters, digits and _")
        if column.lower() in seen:
            raise SqlError(node, f"two columns are named {column}")
        if column.lower() in _KAFKA_COLUMNS:
            raise SqlError(
                node,
                f"column {column}: the name of a Kafka column ({', '.join(_KAFKA_COLUMNS)}); "
                "rename it in the value or leave it out",
            )
        seen.add(column.lower())
        columns.append(Column(column, found))
    return columns


_KAFKA_COLUMNS = ("key", "topic", "partition", "offset", "timestamp")


def _options(create: exp.Create) -> dict[str, str]:
    from sqlglot import exp

    options: dict[str, str] = {}
    properties = create.args.get("properties")
    for prop in properties.expressions if properties is not None else []:
        if not isinstance(prop, exp.Property) or not isinstance(
            prop.args.get("value"), exp.Literal
        ):
            raise SqlError(prop, f"{prop.sql('spark')}: WITH takes NAME = 'value' options")
        key = prop.name.upper()
        if key not in _OPTIONS:
            raise SqlError(prop, f"unknown option {prop.name} (options: {', '.join(_OPTIONS)})")
        options[key] = str(prop.args["value"].this)
    return options


def _event_time(
    create: exp.Create, options: dict[str, str], columns: list[Column], value_format: str | None
) -> EventTime | None:
    column = options.pop("TIMESTAMP", None)
    time_format = options.pop("TIMESTAMP_FORMAT", None)
    if column is None:
        if time_format is not None:
            raise SqlError(create, "TIMESTAMP_FORMAT without TIMESTAMP: which column?")
        return None
    found = next((c for c in columns if c.name.lower() == column.lower()), None)
    if found is None:
        raise SqlError(create, f"TIMESTAMP = '{column}' is not a declared column")
    if value_format not in (None, "json"):
        raise SqlError(
            create,
            f"TIMESTAMP from a column of a {value_format} value is not supported yet; leave it "
            "out to use the Kafka record timestamp",
        )
    if time_format is None:
        time_format = "epoch_millis" if found.type in ("int", "bigint", "double") else "iso8601"
    time_format = time_format.lower()
    if time_format not in TIME_FORMATS:
        raise SqlError(
            create,
            f"TIMESTAMP_FORMAT {time_format!r} is not one of {', '.join(TIME_FORMATS)}",
        )
    if found.type == "boolean":
        raise SqlError(create, f"TIMESTAMP = '{column}': a BOOLEAN is no time")
    return EventTime(found.name, time_format)
