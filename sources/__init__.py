"""Where records come from: replay files, the embedded datagen, Kafka.

Every source emits `RawBatch`es, so the dataflows do not care which
one runs. `source_for` picks it from the settings.
"""

from __future__ import annotations

from bytewax.inputs import Source

from config import Settings
from events.schema import RawBatch
from kafka_client.admin import check_topics
from kafka_client.schema_registry import check_registry
from setting import ConfigError
from sources.datagen import DatagenSource, Shape
from sources.kafka import KafkaSource
from sources.replay import ReplaySource


def source_for(settings: Settings, shape: Shape, dataflow: str) -> Source[RawBatch]:
    """The source the settings ask for, reading records of `shape` for `dataflow`."""
    if settings.source == "replay":
        return ReplaySource(
            settings.replay_file(f"{shape}.jsonl"),
            settings.batch_size,
            settings.max_future_skew_s,
            dataflow,
        )
    if settings.source == "datagen":
        return DatagenSource(
            shape, settings.datagen_rate, settings.datagen_count, settings.batch_size, dataflow
        )
    kafka = settings.kafka
    if kafka is None:
        raise ConfigError("CLICKSTREAM_SOURCE=kafka needs KAFKA_BOOTSTRAP_SERVERS")
    topic = kafka.clickstream_topic if shape == "clickstream" else kafka.user_clickstream_topic
    partitions = check_topics(kafka, [topic])[topic]
    if kafka.registry is not None and kafka.value_format != "json":
        check_registry(kafka.registry, settings.storage_retry_s)
    return KafkaSource(
        kafka,
        topic,
        partitions,
        settings.batch_size,
        settings.idle_timeout_s,
        settings.max_future_skew_s,
        dataflow,
    )
