"""`USER_CLICKSTREAM` -> every table whose SQL reads `FROM user_clickstream`.

    python -m bytewax.run dataflows.user_clickstream:flow

The repo's `tables/` has two: click_user_sessions and user_ip_activity.
"""

from bytewax.dataflow import Dataflow

from config import Settings
from dataflows.common import flow_from_env, read_events, window_tables, write_tables
from events.schema import UserClick


def build(settings: Settings) -> Dataflow:
    """The dataflow, reading and writing where `settings` say."""
    flow = Dataflow("user_clickstream")
    raw, events, dead = read_events(flow, settings, "user_clickstream", UserClick)
    write_tables(flow, settings, raw, dead, window_tables(events, settings, "user_clickstream"))
    return flow


def __getattr__(name: str) -> Dataflow:
    # `flow` is built from the environment only when `python -m bytewax.run` asks for it,
    # so tests can import `build` without a configured environment.
    if name == "flow":
        return flow_from_env(build)
    raise AttributeError(name)
