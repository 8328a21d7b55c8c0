"""Schema Registry formats: the `clickstream` dataflow reading the same events from Kafka
in Avro (and JSON Schema, Protobuf) against reading them in plain JSON, bounded run,
one worker, real broker and registry; and our Avro decoding of a batch into events
against confluent-kafka's `AvroDeserializer` called per record (then the same
conversion into events), on the same values."""

from __future__ import annotations

import logging
import tempfile
import time
from functools import partial
from pathlib import Path

import msgspec
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

import dataflows.clickstream
from benchmarks.common import Record
from benchmarks.kafka import _best_rate, bootstrap_servers
from benchmarks.shapes import Click
from benchmarks.sql_tables import _best_of_alternating
from events import datagen
from events.encoders import CLICK, AvroEncoder
from events.formats import decoder_for
from infra import schema_registry
from kafka_client.schema_registry import register_value_schema
from kafka_client.settings import KafkaSettings, RegistrySettings
from tools.produce import produce_replay
from tools.replay_gen import generate


def _decoders(registry: RegistrySettings, n: int, record: Record) -> None:
    encoder = AvroEncoder(CLICK)
    topic = f"bench-decode-{int(time.time())}"
    schema_id = register_value_schema(registry, topic, "AVRO", encoder.schema_str)
    clicks = datagen.ClickGenerator(5)
    values = [encoder.encode(schema_id, clicks.click()) for _ in range(n)]
    ours = decoder_for(schema_id, "AVRO", encoder.schema_str)
    many = list[Click]
    client = SchemaRegistryClient(registry.client_config())
    theirs = AvroDeserializer(client, conf={"subject.name.strategy.type": "TOPIC"})
    context = SerializationContext(topic, MessageField.VALUE)
    batches = [values[i : i + 1_000] for i in range(0, n, 1_000)]

    def run_ours(_: int) -> float:
        start = time.perf_counter()
        for batch in batches:
            ours.events(batch, Click)
        return n / (time.perf_counter() - start)

    def run_theirs(_: int) -> float:
        start = time.perf_counter()
        for batch in batches:
            msgspec.convert([theirs(v, context) for v in batch], many, strict=False)
        return n / (time.perf_counter() - start)

    try:
        mine, base = _best_of_alternating(run_ours, run_theirs)
    finally:
        client.close()
    record(
        "formats",
        "Avro batch -> events: values to MessagePack in Rust (native/), then msgspec",
        mine,
        "confluent-kafka AvroDeserializer per record, same convert",
        base,
    )


def bench_formats(scale: float, record: Record) -> None:
    logging.getLogger("librdkafka").setLevel(logging.ERROR)
    n = int(200_000 * scale)
    with tempfile.TemporaryDirectory() as tmp, bootstrap_servers(Path(tmp)) as bootstrap:
        registry = schema_registry.start(Path(tmp, "registry"))
        try:
            settings = RegistrySettings(registry.url)
            _decoders(settings, min(n, 100_000), record)
            dump = Path(tmp, "dump")
            generate(dump, events=n, rate=500, partitions=4, jitter_ms=20_000, seed=5)
            suffix = str(int(time.time()))
            topics: dict[str, KafkaSettings] = {}
            for value_format in ("json", "avro", "json_sr", "protobuf"):
                topics[value_format] = KafkaSettings(
                    bootstrap_servers=bootstrap,
                    stop_at_end=True,
                    registry=settings,
                    value_format=value_format,
                    clickstream_topic=f"bench-{value_format}-c-{suffix}",
                    user_clickstream_topic=f"bench-{value_format}-u-{suffix}",
                )
                produce_replay(topics[value_format], dump, 4)
            print(f"formats: {n:,} records in 4 partitions, bounded run, 1 worker", flush=True)
            build = dataflows.clickstream.build

            def rate(kafka: KafkaSettings, i: int) -> float:
                out = Path(tmp, f"{kafka.value_format}-{i}")
                return _best_rate(build, kafka, out, n, runs=1)

            json_kafka = topics["json"]
            for value_format in ("avro", "json_sr", "protobuf"):
                framed, plain = _best_of_alternating(
                    partial(rate, topics[value_format]), partial(rate, json_kafka)
                )
                record(
                    "formats",
                    f"clickstream from Kafka in {value_format} -> Parquet",
                    framed,
                    "the same events in JSON",
                    plain,
                )
        finally:
            registry.stop()
