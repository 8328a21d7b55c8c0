"""`USER_CLICKSTREAM` -> every table whose SQL reads `FROM user_clickstream`.

    python -m bytewax.run dataflows.user_clickstream:flow

The repo's `tables/` has two: click_user_sessions and user_ip_activity. The stream is
declared in `streams/user_clickstream.sql`; this is `dataflows.tables` for it.
"""

from bytewax.dataflow import Dataflow

from config import Settings
from dataflows.common import flow_from_env, stream_tables


def build(settings: Settings) -> Dataflow:
    """The dataflow, reading and writing where `settings` say."""
    return stream_tables(settings, "user_clickstream")


def __getattr__(name: str) -> Dataflow:
    # `flow` is built from the environment only when `python -m bytewax.run` asks for it,
    # so tests can import `build` without a configured environment.
    if name == "flow":
        return flow_from_env(build)
    raise AttributeError(name)
