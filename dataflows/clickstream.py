"""`clickstream` -> pages_per_min and errors_per_min_alert.

    python -m bytewax.run dataflows.clickstream:flow

| table | watermark | filter | window | key | having |
|---|---|---|---|---|---|
| pages_per_min | 60 s | request contains "html" | sliding 60 s / 5 s | userid | |
| errors_per_min_alert | 60 s | status > 400 | sliding 60 s / 20 s | status | errors > 5 |
"""

from operator import attrgetter

from bytewax.dataflow import Dataflow

from config import Settings
from dataflows.common import flow_from_env, read_events, write_tables
from events.schema import Click
from operators.windows import Sliding, count_window
from sinks.tables import ERRORS_PER_MIN_ALERT, PAGES_PER_MIN


def build(settings: Settings) -> Dataflow:
    """The dataflow, reading and writing where `settings` say."""
    flow = Dataflow("clickstream")
    raw, clicks, dead = read_events(flow, settings, "clickstream", Click)
    pages = count_window(
        "pages_per_min",
        clicks,
        key=attrgetter("userid"),
        window=Sliding(60_000, 5_000),
        delay_ms=60_000,
        where=lambda c: "html" in c.request,
    )
    errors = count_window(
        "errors_per_min_alert",
        clicks,
        key=attrgetter("status"),
        window=Sliding(60_000, 20_000),
        delay_ms=60_000,
        where=lambda c: c.status > 400,
        having=lambda errors: errors > 5,
    )
    write_tables(
        flow,
        settings,
        raw,
        dead,
        [
            (PAGES_PER_MIN, pages, lambda userid: (userid,)),
            (ERRORS_PER_MIN_ALERT, errors, lambda status: (status,)),
        ],
    )
    return flow


def __getattr__(name: str) -> Dataflow:
    # `flow` is built from the environment only when `python -m bytewax.run` asks for it,
    # so tests can import `build` without a configured environment.
    if name == "flow":
        return flow_from_env(build)
    raise AttributeError(name)
