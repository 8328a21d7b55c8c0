"""What is stored: each output table's name, columns and types, the column its hive
partitions come from, and the two tables every dataflow writes besides its window
tables (late events and dead letters). The window tables' descriptions come from their
SQL (`sql`); the sinks write what these describe. A table names its column types by
their Polars names ("Int64"), not by Polars' classes: Polars (0.3-0.4 s of imports) is
imported by a sink's first flush, not by the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

DTYPES = frozenset({"Int64", "Float64", "String", "Boolean", "Binary", "Date"})
"""The column types a table may have, by their Polars names."""

HIVE_COLUMNS = ("event_date", "event_hour")


@dataclass(frozen=True)
class Table:
    """One output table: column names and types (`DTYPES`) in row order.

    `timestamps` name the columns given as epoch milliseconds in rows and stored as
    UTC timestamps; `partition_by` is the one the hive partitions come from.
    """

    name: str
    columns: Sequence[tuple[str, str]]
    partition_by: str
    timestamps: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = {t for _, t in self.columns} - DTYPES
        if unknown:
            raise ValueError(f"table {self.name}: unknown column types {sorted(unknown)}")


LATE_EVENTS = Table(
    "late_events",
    [
        ("dataflow", "String"),
        ("table_name", "String"),
        ("group_key", "String"),
        ("event_time", "Int64"),
        ("watermark", "Int64"),
        ("windows_missed", "Int64"),
        ("windows_total", "Int64"),
        ("reason", "String"),
        ("topic", "String"),
        ("partition", "Int64"),
        ("offset", "Int64"),
    ],
    partition_by="event_time",
    timestamps=frozenset({"event_time", "watermark"}),
)
DEAD_LETTERS = Table(
    "dead_letters",
    [
        ("dataflow", "String"),
        ("topic", "String"),
        ("partition", "Int64"),
        ("offset", "Int64"),
        ("ts", "Int64"),
        ("key", "Binary"),
        ("payload", "Binary"),
        ("reason", "String"),
    ],
    partition_by="ts",
    timestamps=frozenset({"ts"}),
)
