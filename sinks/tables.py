"""The tables every dataflow writes besides its window tables (those come from SQL, see
`sql`): late events and dead letters."""

from __future__ import annotations

from sinks.base import Table

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
