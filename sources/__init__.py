"""Where records come from: replay files, the embedded datagen, Kafka.

Every source emits `RawBatch`es, so the dataflows do not care which
one runs. `source_for` picks it from the settings.
"""

from __future__ import annotations

from bytewax.inputs import Source

from config import Settings, slow_reads_for_tests
from events.schema import RawBatch
from events.streams import Stream, TimesOf, times_of
from kafka_client.admin import check_topics
from kafka_client.schema_registry import check_registry
from ownership.store import saved_keys
from process import run_args
from setting import ConfigError
from sources.datagen import DATAGEN_STREAMS, DatagenSource
from sources.kafka import KafkaSource
from sources.replay import ReplaySource, replay_parts


def source_for(
    settings: Settings, stream: Stream, dataflow: str, step_id: str = ""
) -> Source[RawBatch]:
    """The source the settings ask for, reading the records of `stream` for `dataflow`
    in step `step_id` (whose saved state a resume reads)."""
    if settings.source == "replay":
        path = settings.replay_file(f"{stream.name}.jsonl")
        run = run_args()
        # a part a worker of a cluster (Bytewax gives each worker one); in one process,
        # one part: its workers share one GIL, so more parts only add reading
        workers = run.workers * run.processes if run is not None and run.processes > 1 else 1
        parts = settings.replay_parts or workers
        saved = saved_keys(run.recovery, step_id) if run and run.recovery else set()
        return ReplaySource(
            path,
            settings.batch_size,
            settings.max_future_skew_s,
            dataflow,
            _payload_times(stream, stream.value_format or "json"),
            replay_parts(parts, saved),
            slow_reads_for_tests(),
        )
    if settings.source == "datagen":
        if stream.name not in DATAGEN_STREAMS:
            raise ConfigError(
                f"CLICKSTREAM_SOURCE=datagen makes {' and '.join(DATAGEN_STREAMS)} records, not "
                f"{stream.name}; read it from Kafka or a replay"
            )
        return DatagenSource(
            stream.name,  # one of DATAGEN_STREAMS
            settings.datagen_rate,
            settings.datagen_count,
            settings.batch_size,
            dataflow,
        )
    kafka = settings.kafka
    if kafka is None:
        raise ConfigError("CLICKSTREAM_SOURCE=kafka needs KAFKA_BOOTSTRAP_SERVERS")
    topic = kafka.topic_of(stream.name, stream.topic)
    value_format = stream.value_format or kafka.value_format
    partitions = check_topics(kafka, [topic])[topic]
    if kafka.registry is not None and value_format != "json":
        check_registry(kafka.registry, settings.storage_retry_s)
    return KafkaSource(
        kafka,
        topic,
        partitions,
        settings.batch_size,
        settings.idle_timeout_s,
        settings.max_future_skew_s,
        dataflow,
        value_format,
        _payload_times(stream, value_format),
        slow_reads_for_tests(),
    )


def _payload_times(stream: Stream, value_format: str) -> TimesOf | None:
    """How the event time is read from a value of `stream`, when a column of the payload
    holds it (None: the Kafka record timestamp)."""
    if stream.event_time is None:
        return None
    if value_format != "json":
        raise ConfigError(
            f"{stream.path or stream.name}: the event time is column "
            f"{stream.event_time.column} of the payload, which is read from JSON values only; "
            f"the values are {value_format} (set VALUE_FORMAT = 'JSON' in the declaration)"
        )
    return times_of(stream.event_time)
