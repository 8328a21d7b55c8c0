"""One `.sql` file, one table: what `window_aggregate` needs (key, where, aggregates,
having) and the output table's columns and types, compiled from the SQL.

`sql.compiler` reads the SQL with sqlglot and writes the table out as Python source;
`materialize` runs that source. The source is kept in a cache folder
(`CLICKSTREAM_SQL_CACHE`) under a hash of the SQL, the stream's columns and the
compiler's own code, so a start whose tables compiled before imports no SQL parser
(0.2-0.4 s of every start) and runs the very source the compiler wrote then.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import types
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cache
from importlib.util import find_spec
from operator import attrgetter
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import msgspec

from config import sql_cache_folder
from events.streams import KAFKA_COLUMNS, Timestamp
from operators.aggregates import Aggregate
from operators.windows import Session, Sliding, Window
from sql.functions import HELPERS
from storage.tables import Table

log = logging.getLogger(__name__)

EVENT_TIME = "timestamp"


@dataclass(frozen=True)
class Column:
    """A field of the stream's events, as SQL sees it."""

    name: str  # the event's attribute
    type: type
    nullable: bool


def columns_of(event_type: type[msgspec.Struct]) -> dict[str, Column]:
    """The SQL columns of an event type, by lower-case name. Kafka's columns other than
    `key` are never null (`Parser` fills them); `timestamp` is a SQL timestamp."""
    out = {}
    for f in msgspec.structs.fields(event_type):
        kind, nullable = f.type, False
        if get_origin(kind) in (Union, types.UnionType):
            args = [a for a in get_args(kind) if a is not type(None)]
            kind, nullable = args[0], True
        if f.name in KAFKA_COLUMNS and f.encode_name != f.name:
            nullable = f.name == "key"
            kind = Timestamp if f.name == EVENT_TIME else kind
        out[f.name.lower()] = Column(f.name, kind, nullable)
    return out


@dataclass(frozen=True)
class SqlTable:
    """A table compiled from its SQL: what the window operator and the sink need."""

    name: str
    stream: str
    window: Window
    delay_ms: int
    key: Callable[[Any], Hashable]
    where: Callable[[Any], bool] | None
    aggregates: list[Aggregate]
    having: Callable[[tuple], bool] | None
    # (key, window start, window end, aggregate values) -> the row, in SELECT order
    row: Callable[[Any, int, int, tuple], tuple]
    table: Table
    # What it computes (normalized SQL): a recovery store is checked against it.
    definition: str
    # Earlier definitions of the same meaning a store may have been saved under.
    earlier: list[str] = field(default_factory=list)
    # What each column is, in SELECT order: a group `key`, the window's `start` or
    # `end`, or a `value` (an aggregate).
    roles: tuple[str, ...] = ()
    # the event attributes it reads (`Parser` fills the Kafka columns among them)
    reads: frozenset[str] = frozenset()


def compile_table(
    text: str, name: str, streams: dict[str, type[msgspec.Struct]], shards: int
) -> SqlTable:
    """The table `name` defined by the SQL `text`; `SqlError` for anything unsupported.

    From the cache when these inputs compiled before; compiled (and kept) otherwise."""
    folder = sql_cache_folder()
    path = None if folder is None else folder / f"{_cache_key(text, name, streams, shards)}.py"
    if path is not None:
        try:
            return materialize(path.read_text())
        except OSError:
            pass  # not compiled yet, or an unreadable cache
        except Exception as ex:  # a damaged file: the compiler writes it anew
            log.warning("sql: %s is not a compiled table (%s); compiling %s again", path, ex, name)
    from sql.compiler import compile_source  # sqlglot: only for SQL that is new

    source = compile_source(text, name, streams, shards)
    table = materialize(source)
    if path is not None:
        keep(path, source)
    return table


def _no_key(_event: Any) -> None:
    return None


def _descendants(cls: type[Aggregate]) -> list[type[Aggregate]]:
    """Every subclass of `cls`, theirs too."""
    found: list[type[Aggregate]] = []
    children: list[type[Aggregate]] = cls.__subclasses__()
    for child in children:
        found += [child, *_descendants(child)]
    return found


# The names the compiler's source may use (`sql.compiler.compile_source`).
_NAMES: dict[str, Any] = {
    **HELPERS,
    "SqlTable": SqlTable,
    "Table": Table,
    "Sliding": Sliding,
    "Session": Session,
    "attrgetter": attrgetter,
    "no_key": _no_key,
    # every aggregate by its class name: a new one is one new subclass, nothing here
    **{a.__name__: a for a in _descendants(Aggregate)},
}


def materialize(source: str) -> SqlTable:
    """The `SqlTable` the compiler's `source` builds: one `eval` of our own source."""
    table = eval(compile(source, "<sql table>", "eval"), dict(_NAMES))
    if not isinstance(table, SqlTable):
        raise TypeError(f"compiled source gave {type(table).__name__}, not a SqlTable")
    return table


KEPT = 256
"""Compiled tables the cache keeps: the oldest go when a new one comes (a release or an
edited file leaves its old entries behind, and nothing else removes them)."""


def keep(path: Path, source: str) -> None:
    """Write `source` to `path` whole or not at all, and drop the oldest entries of its
    kind (suffix) beyond `KEPT`; a cache that cannot be written only costs the next start
    a compile."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        hidden.write_text(source)
        os.replace(hidden, path)
        kept = sorted(
            path.parent.glob(f"*{path.suffix}"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in kept[KEPT:]:
            old.unlink(missing_ok=True)
    except OSError as ex:  # another process removed one first, or no permission
        log.debug("sql: cannot keep compiled %s (%s)", path, ex)


def _cache_key(text: str, name: str, streams: dict[str, type[msgspec.Struct]], shards: int) -> str:
    digest = hashlib.sha256(compiler_fingerprint())
    columns = {
        s: sorted((k, c.name, c.type.__name__, c.nullable) for k, c in columns_of(t).items())
        for s, t in sorted(streams.items())
    }
    digest.update(repr((text, name, shards, columns)).encode())
    return digest.hexdigest()[:32]


@cache
def compiler_fingerprint() -> bytes:
    """What the compiled source depends on besides its inputs: the code of this package,
    of every module whose names the source uses (the aggregates' constructors, `Table`,
    the windows), and sqlglot's version. A new release compiles afresh."""
    digest = hashlib.sha256()
    named = {
        sys.modules[v.__module__].__file__ for v in _NAMES.values() if hasattr(v, "__module__")
    }
    files = {*Path(__file__).parent.glob("*.py"), *(Path(f) for f in named if f)}
    for path in sorted(files):
        digest.update(path.name.encode() + path.read_bytes())
    spec = find_spec("sqlglot")
    if spec is not None and spec.origin is not None:
        version = Path(spec.origin).parent / "_version.py"
        digest.update(version.read_bytes() if version.exists() else b"?")
    return digest.digest()
