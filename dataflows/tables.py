"""Any declared stream -> every table whose SQL reads it; no Python for a new topic.

    CLICKSTREAM_STREAM=orders python -m bytewax.run dataflows.tables:flow

The stream is a file of the streams folder (`CLICKSTREAM_STREAMS`, default the repo's
`streams/`), its tables are the files of `CLICKSTREAM_TABLES` whose `FROM` names it.
The dataflow is named after the stream: its recovery store, lease and output rows say
which stream they are of.
"""

from bytewax.dataflow import Dataflow

from config import Settings
from dataflows.common import flow_from_env, stream_tables
from setting import ConfigError


def build(settings: Settings) -> Dataflow:
    """The dataflow of stream `CLICKSTREAM_STREAM`, reading and writing where `settings` say."""
    if settings.stream is None:
        raise ConfigError("CLICKSTREAM_STREAM: which stream? (a file of CLICKSTREAM_STREAMS)")
    return stream_tables(settings, settings.stream)


def __getattr__(name: str) -> Dataflow:
    # `flow` is built from the environment only when `python -m bytewax.run` asks for it.
    if name == "flow":
        return flow_from_env(build)
    raise AttributeError(name)
