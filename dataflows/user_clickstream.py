"""`USER_CLICKSTREAM` -> click_user_sessions and user_ip_activity.

    python -m bytewax.run dataflows.user_clickstream:flow

| table | watermark | window | key | having |
|---|---|---|---|---|
| click_user_sessions | 30 s | session, gap 30 s | USERNAME | |
| user_ip_activity | 60 s | tumbling 60 s | username, ip, city | count > 1 |
"""

from operator import attrgetter

from bytewax.dataflow import Dataflow

from config import Settings
from dataflows.common import flow_from_env, read_events, write_tables
from events.schema import UserClick
from operators.windows import Session, Tumbling, count_window
from sinks.tables import CLICK_USER_SESSIONS, USER_IP_ACTIVITY


def build(settings: Settings) -> Dataflow:
    """The dataflow, reading and writing where `settings` say."""
    flow = Dataflow("user_clickstream")
    raw, clicks, dead = read_events(flow, settings, "user_clickstream", UserClick)
    sessions = count_window(
        "click_user_sessions",
        clicks,
        key=attrgetter("username"),
        window=Session(30_000),
        delay_ms=30_000,
    )
    activity = count_window(
        "user_ip_activity",
        clicks,
        key=attrgetter("username", "ip", "city"),
        window=Tumbling(60_000),
        delay_ms=60_000,
        having=lambda count: count > 1,
    )
    write_tables(
        flow,
        settings,
        raw,
        dead,
        [
            (CLICK_USER_SESSIONS, sessions, lambda username: (username,)),
            (USER_IP_ACTIVITY, activity, tuple),
        ],
    )
    return flow


def __getattr__(name: str) -> Dataflow:
    # `flow` is built from the environment only when `python -m bytewax.run` asks for it,
    # so tests can import `build` without a configured environment.
    if name == "flow":
        return flow_from_env(build)
    raise AttributeError(name)
