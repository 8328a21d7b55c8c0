"""Kafka benchmark: each dataflow reading a pre-filled topic from a real broker (bounded
run, one worker) against the raw ceiling on the same topic: confluent-kafka consuming
and JSON-parsing the records, no dataflow around them. Also our source and parser
alone in a Bytewax dataflow against the same ceiling: what is left for the windows
and the sink."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import Consumer, TopicPartition

import dataflows.clickstream
import dataflows.user_clickstream
from benchmarks.common import CountingSink, Record
from benchmarks.shapes import Click, UserClick
from config import Settings
from events.parse import Parser
from infra import kafka_broker
from kafka_client.admin import client_config
from kafka_client.settings import KafkaSettings
from sources import source_for
from tools.produce import replay_to_new_topics
from tools.replay_gen import generate


def ceiling(kafka: KafkaSettings, topic: str, shape: type, n: int) -> float:
    """confluent-kafka alone: a consumer per partition (as our source has), polled in turn,
    every record JSON-parsed into the same typed event. Nothing else."""
    decode: Callable[[Any], Any] = msgspec.json.Decoder(shape, strict=False).decode
    conf = client_config(kafka, **{"group.id": "bench", "enable.auto.commit": False})
    probe = Consumer(conf)
    parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
    probe.close()
    consumers = []
    for p in parts:
        consumer = Consumer(conf)
        consumer.assign([TopicPartition(topic, p, 0)])
        consumers.append(consumer)
    start = time.perf_counter()
    seen = 0
    while seen < n:
        for consumer in consumers:
            for msg in consumer.consume(2_000, timeout=0):
                if msg.error() is None:
                    decode(msg.value())
                    seen += 1
    rate = n / (time.perf_counter() - start)
    for consumer in consumers:
        consumer.close()
    return rate


def read_and_parse(settings: Settings, shape_name: str, shape: type) -> Dataflow:
    """Our Kafka source and parser, as the dataflows have them, and nothing else."""

    flow = Dataflow(f"read_and_parse_{shape_name}")
    raw = op.input("read", flow, source_for(settings, shape_name, flow.flow_id))  # type: ignore[arg-type]
    op.output("count", op.map("parse", raw, Parser(shape, flow.flow_id)), CountingSink())
    return flow


def _best_rate(
    build: Callable[[Settings], Dataflow], kafka: KafkaSettings, output: Path, n: int, runs: int = 3
) -> float:
    """Best of `runs` bounded runs of the flow `build` makes, each writing to its own dir."""
    rate = 0.0
    for attempt in range(runs):
        flow = build(Settings(source="kafka", kafka=kafka, output=str(output / str(attempt))))
        start = time.perf_counter()
        run_main(flow)
        rate = max(rate, n / (time.perf_counter() - start))
    return rate


@contextmanager
def bootstrap_servers(tmp: Path) -> Iterator[str]:
    """$KAFKA_BOOTSTRAP_SERVERS, or a broker started in `tmp` for the benchmark and stopped
    after it."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = kafka_broker.start(tmp / "kafka")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def bench_kafka(scale: float, record: Record) -> None:
    logging.getLogger("librdkafka").setLevel(logging.ERROR)
    n = int(300_000 * scale)
    with tempfile.TemporaryDirectory() as tmp, bootstrap_servers(Path(tmp)) as bootstrap:
        dump = Path(tmp, "dump")
        generate(dump, events=n, rate=500, partitions=4, jitter_ms=20_000, seed=5)
        kafka = replay_to_new_topics(bootstrap, dump, "bench")
        print(f"kafka: {n:,} records in 4 partitions, bounded run, 1 worker", flush=True)
        flows: list[tuple[str, Callable[[Settings], Dataflow], str, type]] = [
            ("clickstream", dataflows.clickstream.build, kafka.clickstream_topic, Click),
            (
                "user_clickstream",
                dataflows.user_clickstream.build,
                kafka.user_clickstream_topic,
                UserClick,
            ),
        ]
        for name, build, topic, shape in flows:
            # best of three for both sides: the machine is noisy (the broker shares
            # its two cores), and the first read also warms the broker's cache
            base = max(ceiling(kafka, topic, shape, n) for _ in range(3))
            rate = _best_rate(build, kafka, Path(tmp, name), n)
            record(
                "kafka",
                f"{name} from Kafka -> Parquet",
                rate,
                "confluent-kafka consume + JSON parse",
                base,
            )
            only_read = partial(read_and_parse, shape_name=name, shape=shape)
            floor = _best_rate(only_read, kafka, Path(tmp, f"{name}-read"), n)
            record(
                "kafka",
                f"{name}: our source + parser only, in Bytewax",
                floor,
                "confluent-kafka consume + JSON parse",
                base,
            )
