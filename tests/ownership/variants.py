"""Changed definitions of the `clickstream` dataflow, to resume a store with:

    python -m bytewax.run tests.ownership.variants:wider_slide

`wider_slide`: pages_per_min slides every 10 s instead of 5 s, errors_per_min_alert
is gone. `pages_only`: pages_per_min unchanged, errors_per_min_alert is gone.
"""

from __future__ import annotations

from functools import partial
from operator import attrgetter

from bytewax.dataflow import Dataflow

from config import Settings
from dataflows.common import flow_from_env, read_events, write_tables
from events.schema import Click
from operators.windows import Sliding, count_window
from sinks.tables import PAGES_PER_MIN


def _pages_only(settings: Settings, slide_ms: int) -> Dataflow:
    flow = Dataflow("clickstream")
    raw, clicks, dead = read_events(flow, settings, "clickstream", Click)
    pages = count_window(
        "pages_per_min",
        clicks,
        key=attrgetter("userid"),
        window=Sliding(60_000, slide_ms),
        delay_ms=60_000,
        where=lambda c: "html" in c.request,
    )
    write_tables(flow, settings, raw, dead, [(PAGES_PER_MIN, pages, lambda userid: (userid,))])
    return flow


def __getattr__(name: str) -> Dataflow:
    if name == "wider_slide":
        return flow_from_env(partial(_pages_only, slide_ms=10_000))
    if name == "pages_only":
        return flow_from_env(partial(_pages_only, slide_ms=5_000))
    raise AttributeError(name)
