"""A stream: a Kafka topic, its value format, its columns and where its event time is.

Streams are declared in SQL, one `.sql` file each (`streams/` in the repo, or the folder
`CLICKSTREAM_STREAMS` names; `sql.streams` reads them). What a declaration says is a
`Stream`; the events of a stream are a `msgspec.Struct` built from its columns
(`event_type`), so decoding stays in msgspec's C and no dict is made per record.

```python
orders = Stream("orders", "orders", (Column("country", "string"), Column("amount", "double")),
                event_time=EventTime("ts", "epoch_millis"))
Order = event_type(orders)       # fields country: str | None, amount: float | None
times_of(orders.event_time)([b'{"ts": 1700000000000}'])   # ([1700000000000], {})
```

Every column may be null, as in Spark's `from_json`: a field that is missing is null, and
a field of another type is cast as Spark casts a string (`"404"` is 404, `"abc"` null).
"""

from __future__ import annotations

import hashlib
import json
import keyword
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import msgspec

TYPES: dict[str, type] = {
    "string": str,
    "int": int,
    "bigint": int,
    "double": float,
    "boolean": bool,
}
"""The column types a declaration may use besides `timestamp`, and their Python types."""

TIME_FORMATS = ("epoch_millis", "epoch_seconds", "iso8601")
"""How a payload column holds the event time (`TIMESTAMP_FORMAT`)."""

VALUE_FORMATS = ("json", "avro", "json_sr", "protobuf", "auto")


@dataclass(frozen=True)
class Column:
    """A field of a stream's values: its name as written in the value, and its type."""

    name: str
    type: str  # a key of TYPES, or "timestamp"


@dataclass(frozen=True)
class EventTime:
    """The event time is the payload column `column`, held as `format` (`TIME_FORMATS`)."""

    column: str
    format: str


@dataclass(frozen=True)
class Stream:
    """One declared stream."""

    name: str  # what `FROM` calls it (lower case)
    topic: str
    columns: tuple[Column, ...]
    # None: `KAFKA_VALUE_FORMAT` (json by default)
    value_format: str | None = None
    # None: the Kafka record timestamp, as in Spark's Kafka source
    event_time: EventTime | None = None
    # where it was declared, for messages
    path: str = ""


# Avro's types and JSON Schema's, as declared column types
_AVRO_TYPES = {
    "string": "string",
    "enum": "string",
    "int": "int",
    "long": "bigint",
    "float": "double",
    "double": "double",
    "boolean": "boolean",
}
_JSON_TYPES = {"string": "string", "integer": "bigint", "number": "double", "boolean": "boolean"}


def columns_of_schema(schema_type: str, schema_str: str) -> tuple[list[Column], list[str]]:
    """The columns a registry schema gives a stream declared without them (a record's
    top-level fields of simple types; `timestamp-millis` longs are timestamps), and the
    fields left out, each with why. `ValueError` for a schema that is not a record."""
    schema = json.loads(schema_str)
    columns: list[Column] = []
    left_out: list[str] = []
    if schema_type.upper() == "AVRO":
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise ValueError("the Avro schema is not a record")
        fields = [(f["name"], f["type"]) for f in schema["fields"]]
    elif schema_type.upper() == "JSON":
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            raise ValueError("the JSON Schema has no properties")
        fields = list(schema["properties"].items())
    else:
        raise ValueError(f"columns are taken from Avro and JSON schemas, not {schema_type}")
    for name, kind in fields:
        found = _avro_type(kind) if schema_type.upper() == "AVRO" else _json_type(kind)
        if found is None or not is_column_name(name) or name.lower() in KAFKA_COLUMNS:
            left_out.append(f"{name} ({json.dumps(kind)[:60]})")
        else:
            columns.append(Column(name, found))
    return columns, left_out


def _avro_type(kind: Any) -> str | None:
    if isinstance(kind, list):  # a union: null and one type
        kinds = [k for k in kind if k != "null"]
        return _avro_type(kinds[0]) if len(kinds) == 1 else None
    if isinstance(kind, dict):
        if kind.get("logicalType") == "timestamp-millis":
            return "timestamp"
        if kind.get("type") == "enum":
            return "string"
        return None if kind.get("logicalType") else _avro_type(kind.get("type"))
    return _AVRO_TYPES.get(kind) if isinstance(kind, str) else None


def _json_type(kind: Any) -> str | None:
    if not isinstance(kind, dict):
        return None
    types = kind.get("type")
    if isinstance(types, list):
        types = [t for t in types if t != "null"]
        types = types[0] if len(types) == 1 else None
    return _JSON_TYPES.get(types) if isinstance(types, str) else None


def is_column_name(name: str) -> bool:
    """A name that can be a column: a Python identifier that is not a keyword (so it is
    an attribute of the event, and compiled SQL reads it as `e.name`)."""
    return name.isidentifier() and not keyword.iskeyword(name)


class Timestamp(int):
    """The type of a SQL TIMESTAMP (the event time `timestamp`, its min and max): epoch
    milliseconds at run time, a type of its own to the SQL compiler, so that it compares
    with timestamps and string literals only, and is written as a timestamp."""


class Date(int):
    """The type of a SQL DATE (`to_date`): days since 1970-01-01 at run time, written as a
    date."""


KAFKA_COLUMNS: dict[str, type] = {
    "key": str,
    "topic": str,
    "partition": int,
    "offset": int,
    "timestamp": int,
}
"""The columns every stream has besides its declared ones, as Spark's Kafka source gives
them (`key` as a string, as `CAST(key AS STRING)` makes it); `timestamp` is the event
time. `Parser` fills the ones a table reads."""


@cache
def event_type(stream: Stream, only: frozenset[str] | None = None) -> type[msgspec.Struct]:
    """The events of `stream`: a struct of its columns, each optional (default null), and
    of Kafka's columns; with `only`, of those of its columns alone (what a dataflow's
    tables read: msgspec skips the rest of a value without making objects of it). A
    `timestamp` column other than the event time is not a SQL column yet, and left out."""
    fields = [
        (c.name, TYPES[c.type] | None, None)
        for c in stream.columns
        if c.type in TYPES and (only is None or c.name in only)
    ]
    fields += [(name, kind | None, None) for name, kind in KAFKA_COLUMNS.items()]
    # a payload field does not fill a Kafka column: its name in values is one no
    # producer writes (msgspec refuses control characters in it)
    rename = {name: f"<kafka {name}>" for name in KAFKA_COLUMNS}
    # Events cross processes (pickled, their class by name): the name says which
    # declaration, and this module finds the class by it (`__getattr__`)
    kept = None if only is None else sorted(only)
    digest = hashlib.sha256(repr((stream.name, stream.columns, kept)).encode()).hexdigest()[:12]
    name = f"{_class_name(stream.name)}_{digest}"
    built = msgspec.defstruct(name, fields, kw_only=True, rename=rename, module=__name__)
    _BUILT[name] = built
    return built


_BUILT: dict[str, type[msgspec.Struct]] = {}


def __getattr__(name: str) -> type[msgspec.Struct]:
    # the event types `event_type` built in this process, for pickle
    found = _BUILT.get(name)
    if found is None:
        raise AttributeError(name)
    return found


def fill_kafka_columns(
    events: list[Any],
    columns: tuple[str, ...],
    times: list[int],
    origins: Any,
    keys: list[Any],
) -> None:
    """Set the Kafka `columns` of `events` from their batch: event times, origins (topic,
    partition, offset, or None) and record keys (bytes, str or None)."""
    if "timestamp" in columns:
        for e, t in zip(events, times, strict=True):
            e.timestamp = t
    if origins is not None and {"topic", "partition", "offset"} & set(columns):
        for e, (topic, partition, offset) in zip(events, origins, strict=True):
            e.topic, e.partition, e.offset = topic, partition, offset
    if "key" in columns:
        for e, k in zip(events, keys or [None] * len(events), strict=True):
            e.key = k.decode("utf-8", "replace") if isinstance(k, bytes) else k


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or "Event"


def permissive_event(shape: type[msgspec.Struct], fields: Any) -> msgspec.Struct | str:
    """The event of a decoded value whose fields did not all convert: each field that
    does not is null, as Spark's `from_json` does; a value that is not an object is why
    there is no event."""
    if not isinstance(fields, dict):
        return f"not an object: the value is {_JSON_KINDS.get(type(fields), 'a scalar')}"
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(shape):
        found = fields.get(f.encode_name)
        if found is None:
            continue
        try:
            values[f.name] = msgspec.convert(found, f.type, strict=False)
        except msgspec.ValidationError:
            values[f.name] = _spark_cast(found, f.type)
    return shape(**values)


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number"}


def _spark_cast(value: Any, kind: Any) -> Any:
    """What Spark's non-ANSI `CAST(string AS kind)` gives where msgspec refuses: a number
    with a fraction as an integer is truncated; anything else is null."""
    if int in getattr(kind, "__args__", (kind,)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return int(number) if number == number and abs(number) < 2**63 else None
    return None


TimesOf = Callable[[list[Any]], tuple[list[int], dict[int, str]]]
"""Values -> their event times (epoch ms), and why, by position, a value has none."""


def times_of(event_time: EventTime) -> TimesOf:
    """A function that reads the event time from a batch of JSON values. A value whose
    time cannot be read gets 0 and a reason (a dead letter, see `sources`)."""
    holder = msgspec.defstruct(
        "EventTimeHolder", [(event_time.column, int | float | str | None, None)]
    )
    decode = msgspec.json.Decoder(holder).decode
    column, to_ms = event_time.column, _TO_MS[event_time.format]

    def read(values: list[Any]) -> tuple[list[int], dict[int, str]]:
        times: list[int] = []
        errors: dict[int, str] = {}
        for i, value in enumerate(values):
            try:
                raw = getattr(decode(value), column)
                if raw is None:
                    raise ValueError(f"{column} is null or missing")
                times.append(to_ms(raw))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as ex:
                times.append(0)
                errors[i] = f"no event time: {_reason(ex)}"
        return times, errors

    return read


def _reason(ex: Exception) -> str:
    return " ".join(str(ex).split()) or type(ex).__name__


def _epoch_millis(raw: int | float | str) -> int:
    if isinstance(raw, str):
        raw = raw.strip()
        return int(raw) if raw.lstrip("-").isdigit() else int(float(raw))
    return int(raw)


def _epoch_seconds(raw: int | float | str) -> int:
    return round(float(raw) * 1000)


def _iso8601(raw: int | float | str) -> int:
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not an ISO-8601 string")
    text = raw.strip()
    parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if parsed.tzinfo is None:  # no zone: UTC, the session time zone Spark is run with
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


_TO_MS: dict[str, Callable[[Any], int]] = {
    "epoch_millis": _epoch_millis,
    "epoch_seconds": _epoch_seconds,
    "iso8601": _iso8601,
}
