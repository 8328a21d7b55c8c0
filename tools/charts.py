"""The charts of the dashboard and the static report, aggregated in DuckDB.

Every chart covers the last hour of event time before the newest window of its
table and is reduced in SQL to at most a few hundred points, so a day of data
(or a month) draws as fast as a minute of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import plotly.graph_objects as go

from config import registry_kafka, streams_folder, tables_folder
from sql import output_tables
from storage.tables import DEAD_LETTERS, LATE_EVENTS

ALERT_THRESHOLD = 5  # errors_per_min_alert keeps windows with errors > 5
TOP_USERS = 5
MAX_SESSIONS = 300
HOUR = "INTERVAL 1 HOUR"


@dataclass
class Charts:
    """What one refresh shows: figures, the alert windows, health figures."""

    pages: go.Figure
    errors: go.Figure
    sessions: go.Figure
    ip_activity: go.Figure
    alerts: list[dict[str, Any]]
    health: list[dict[str, Any]]
    reasons: list[dict[str, Any]]
    newest_window_end: str | None
    sessions_drawn: int
    ip_users: list[str] = field(default_factory=list)


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title=title, margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=330, **kwargs
    )
    return fig


def _bucket(con: duckdb.DuckDBPyConnection, table: str, points: int = 120) -> str:
    """A time bucket that gives at most `points` per series over the charted hour (at
    least the 5 s slide), as a SQL interval."""
    [(span,)] = _rows(
        con,
        f"select epoch(max(event_start)) - epoch(greatest(min(event_start), "
        f"max(event_start) - {HOUR})) from {table}",
    )
    seconds = max(5, int((span or 0) // points // 5 * 5 + 5))
    return f"INTERVAL {seconds} SECOND"


def pages_chart(con: duckdb.DuckDBPyConnection) -> go.Figure:
    """Pages per minute of the top users over the last hour, at most 120 points each."""
    top = _rows(
        con,
        f"""
        with recent as (
            select * from pages_per_min
            where event_start >= (select max(event_start) from pages_per_min) - {HOUR})
        select userid from recent group by userid order by sum(pages) desc limit {TOP_USERS}
        """,
    )
    fig = go.Figure()
    for (userid,) in top:
        points = _rows(
            con,
            f"""
            select time_bucket({_bucket(con, "pages_per_min")}, event_start) as t, max(pages)
            from pages_per_min
            where userid = {int(userid)}
              and event_start >= (select max(event_start) from pages_per_min) - {HOUR}
            group by t order by t
            """,
        )
        fig.add_trace(
            go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=f"user {userid}")
        )
    return _layout(fig, f"Pages per minute, top {TOP_USERS} users", yaxis_title="pages")


def errors_chart(con: duckdb.DuckDBPyConnection) -> tuple[go.Figure, list[dict[str, Any]]]:
    """Errors per status over time with the alert threshold, and the latest alerts."""
    fig = go.Figure()
    statuses = _rows(con, "select distinct status from errors_per_min_alert order by status")
    bucket = _bucket(con, "errors_per_min_alert")
    for (status,) in statuses:
        points = _rows(
            con,
            f"""
            select time_bucket({bucket}, event_start) as t, max(errors)
            from errors_per_min_alert
            where status = {int(status)}
              and event_start >= (select max(event_start) from errors_per_min_alert) - {HOUR}
            group by t order by t
            """,
        )
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                name=str(status),
                mode="lines+markers",
            )
        )
    fig.add_hline(
        y=ALERT_THRESHOLD,
        line_dash="dash",
        line_color="red",
        annotation_text=f"alert: errors > {ALERT_THRESHOLD}",
    )
    alerts = [
        {"status": s, "window start": str(a), "window end": str(b), "errors": n}
        for s, a, b, n in _rows(
            con,
            "select status, event_start, event_end, errors from errors_per_min_alert "
            "order by event_start desc, status limit 20",
        )
    ]
    return _layout(fig, "Errors per status (alerting windows)", yaxis_title="errors"), alerts


def sessions_chart(con: duckdb.DuckDBPyConnection) -> tuple[go.Figure, int]:
    """The latest sessions of the last hour as a timeline: user against time."""
    rows = _rows(
        con,
        f"""
        select coalesce(username, '(no user)'), event_start, event_end, events
        from click_user_sessions
        where event_end >= (select max(event_end) from click_user_sessions) - {HOUR}
        order by event_end desc limit {MAX_SESSIONS}
        """,
    )
    fig = go.Figure(
        go.Bar(
            base=[r[1] for r in rows],
            x=[(r[2] - r[1]).total_seconds() * 1000 for r in rows],
            y=[r[0] for r in rows],
            orientation="h",
            customdata=[r[3] for r in rows],
            hovertemplate="%{y}: %{customdata} events<extra></extra>",
            name="sessions",
        )
    )
    fig.update_xaxes(type="date")
    return _layout(fig, f"User sessions ({len(rows)} latest)"), len(rows)


def ip_activity_chart(con: duckdb.DuckDBPyConnection) -> tuple[go.Figure, list[str]]:
    """Users seen from more than one IP or city within a minute, over the last hour."""
    rows = _rows(
        con,
        f"""
        with minutes as (
            select username, event_start, count(distinct ip) as ips, count(distinct city) as cities
            from user_ip_activity
            where event_start >= (select max(event_start) from user_ip_activity) - {HOUR}
            group by username, event_start
            having count(distinct ip) > 1 or count(distinct city) > 1)
        select coalesce(username, '(no user)') as user, count(*) as minutes, max(ips), max(cities)
        from minutes group by user order by minutes desc, user limit 50
        """,
    )
    fig = go.Figure(
        [
            go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows], name="minutes"),
        ]
    )
    # minutes are whole: ticks at whole numbers, never 1.5
    most = max((r[1] for r in rows), default=1)
    fig.update_yaxes(tickformat=",d", rangemode="tozero", dtick=max(1, -(-most // 6)))
    title = "Users from more than one IP or city in a minute (minutes, last hour)"
    return _layout(fig, title), [r[0] for r in rows]


def how_long(seconds: float) -> str:
    """A duration as people read it: `42 s`, `5 min 3 s`, `2 h 14 min`, `274 d 19 h`."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days:,} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {s} s"
    return f"{s} s"


def health_figures(con: duckdb.DuckDBPyConnection) -> tuple[list[dict], list[dict], str | None]:
    """Rows per table, freshness, and dead letters and late events by reason."""
    health = []
    newest_end = None
    for table in output_tables(tables_folder(), streams_folder(), registry_kafka()):
        # a window table's freshness is its newest window end; the others' their time
        ends = table.timestamps - {table.partition_by}
        window = table.name not in (LATE_EVENTS.name, DEAD_LETTERS.name) and len(ends) == 1
        time_column = next(iter(ends)) if window else table.partition_by
        n, newest = _rows(con, f"select count(*), max({time_column}) from {table.name}")[0]
        behind = how_long(time.time() - newest.timestamp()) if newest is not None else ""
        health.append(
            {"table": table.name, "rows": n, "newest": str(newest or ""), "behind clock": behind}
        )
        if window and newest is not None:
            newest_end = max(newest_end or str(newest), str(newest))
    reasons = [
        {"table": t, "reason": r, "rows": n}
        for t, r, n in _rows(
            con,
            """
            select 'dead_letters', split_part(reason, ':', 1), count(*) from dead_letters
            group by 2
            union all
            select 'late_events', table_name || ': ' || reason, count(*) from late_events
            group by 2
            order by 3 desc limit 20
            """,
        )
    ]
    return health, reasons, newest_end


def build(con: duckdb.DuckDBPyConnection) -> Charts:
    errors, alerts = errors_chart(con)
    sessions, drawn = sessions_chart(con)
    ip_activity, ip_users = ip_activity_chart(con)
    health, reasons, newest = health_figures(con)
    return Charts(
        pages_chart(con),
        errors,
        sessions,
        ip_activity,
        alerts,
        health,
        reasons,
        newest,
        drawn,
        ip_users,
    )
