"""The tables every dataflow writes besides its window tables (those come from SQL, see
`sql`): late events and dead letters."""

from __future__ import annotations

import polars as pl

from sinks.base import Table

LATE_EVENTS = Table(
    "late_events",
    [
        ("dataflow", pl.String),
        ("table_name", pl.String),
        ("group_key", pl.String),
        ("event_time", pl.Int64),
        ("watermark", pl.Int64),
        ("windows_missed", pl.Int64),
        ("windows_total", pl.Int64),
        ("reason", pl.String),
        ("topic", pl.String),
        ("partition", pl.Int64),
        ("offset", pl.Int64),
    ],
    partition_by="event_time",
    timestamps=frozenset({"event_time", "watermark"}),
)
DEAD_LETTERS = Table(
    "dead_letters",
    [
        ("dataflow", pl.String),
        ("topic", pl.String),
        ("partition", pl.Int64),
        ("offset", pl.Int64),
        ("ts", pl.Int64),
        ("key", pl.Binary),
        ("payload", pl.Binary),
        ("reason", pl.String),
    ],
    partition_by="ts",
    timestamps=frozenset({"ts"}),
)
