"""`clickstream` -> every table whose SQL reads `FROM clickstream`.

    python -m bytewax.run dataflows.clickstream:flow

The repo's `tables/` has two: pages_per_min and errors_per_min_alert. The stream is
declared in `streams/clickstream.sql`; this is `dataflows.tables` for it.
"""

from bytewax.dataflow import Dataflow

from config import Settings
from dataflows.common import flow_from_env, stream_tables


def build(settings: Settings) -> Dataflow:
    """The dataflow, reading and writing where `settings` say."""
    return stream_tables(settings, "clickstream")


def __getattr__(name: str) -> Dataflow:
    # `flow` is built from the environment only when `python -m bytewax.run` asks for it,
    # so tests can import `build` without a configured environment.
    if name == "flow":
        return flow_from_env(build)
    raise AttributeError(name)
