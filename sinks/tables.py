"""The output tables: names, columns and types, as users query them."""

from __future__ import annotations

import polars as pl

from sinks.base import Table

_WINDOW = frozenset({"event_start", "event_end"})

PAGES_PER_MIN = Table(
    "pages_per_min",
    [("userid", pl.Int64), ("event_start", pl.Int64), ("event_end", pl.Int64), ("pages", pl.Int64)],
    partition_by="event_start",
    timestamps=_WINDOW,
)
ERRORS_PER_MIN_ALERT = Table(
    "errors_per_min_alert",
    [
        ("status", pl.Int64),
        ("event_start", pl.Int64),
        ("event_end", pl.Int64),
        ("errors", pl.Int64),
    ],
    partition_by="event_start",
    timestamps=_WINDOW,
)
CLICK_USER_SESSIONS = Table(
    "click_user_sessions",
    [
        ("username", pl.String),
        ("event_start", pl.Int64),
        ("event_end", pl.Int64),
        ("events", pl.Int64),
    ],
    partition_by="event_start",
    timestamps=_WINDOW,
)
USER_IP_ACTIVITY = Table(
    "user_ip_activity",
    [
        ("username", pl.String),
        ("ip", pl.String),
        ("city", pl.String),
        ("event_start", pl.Int64),
        ("event_end", pl.Int64),
        ("count", pl.Int64),
    ],
    partition_by="event_start",
    timestamps=_WINDOW,
)
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

ALL_TABLES = [
    PAGES_PER_MIN,
    ERRORS_PER_MIN_ALERT,
    CLICK_USER_SESSIONS,
    USER_IP_ACTIVITY,
    LATE_EVENTS,
    DEAD_LETTERS,
]
