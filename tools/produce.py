"""Produce datagen-shaped records into Kafka, like Confluent's datagen quickstarts.

    python -m tools.produce --rate 100 --duration 60 --partitions 4
    python -m tools.produce --count 10000 --rate 1000

Creates (if missing) `clickstream` (key ip), `clickstream_users` (key user_id,
compacted) and `clickstream_codes` (key code), then produces users and codes first
and clicks at `--rate` per second, for `--count` records or `--duration` seconds,
with a progress line. Connection settings come from the same environment as the
dataflows (`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_CONFIG_FILE`, SASL variables).
`--format avro` (or `json_sr`, `protobuf`; default `KAFKA_VALUE_FORMAT`, JSON for
`auto`) writes clicks and users as Datagen's Avro connector does: in Confluent's framing,
their schemas registered under `<topic>-value` (needs `KAFKA_SCHEMA_REGISTRY_URL`).
Users 1..30 exist from the start; 31..39 appear halfway, so early clicks of
theirs are join misses, as with a user table that is still filling.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from events import datagen
from events.encoders import CLICK, USER, Shape, ksql_shape
from kafka_client.admin import client_config, end_offsets, visible_partitions
from kafka_client.settings import VALUE_FORMATS, KafkaSettings
from process import fail
from setting import ConfigError
from sinks.kafka import value_encoder
from sql import load_streams


def create_topics(kafka: KafkaSettings, topics: dict[str, dict[str, str]], partitions: int) -> None:
    """Create missing topics (`name -> topic config`); existing ones are left alone."""
    admin = AdminClient(client_config(kafka))
    existing = set(admin.list_topics(timeout=20).topics)
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=-1, config=conf)
        for name, conf in topics.items()
        if name not in existing
    ]
    if not new:
        return
    for name, future in admin.create_topics(new).items():
        try:
            future.result(timeout=30)
        except Exception as ex:
            if "already exists" not in str(ex):
                raise
        # created is not yet shown: a check of the topic at once could still miss it
        if visible_partitions(admin, name, timeout_s=30) is None:
            raise RuntimeError(f"Kafka topic {name!r} was created but does not show")


def producer(kafka: KafkaSettings) -> Producer:
    return Producer(
        client_config(
            kafka, **{"enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4"}
        )
    )


def encoder(kafka: KafkaSettings, topic: str, shape: Shape) -> Callable[[Any], bytes]:
    """How a JSON record becomes a value of `topic`: as it is, or in the Schema Registry
    format `KAFKA_VALUE_FORMAT` names."""
    if kafka.value_format in ("json", "auto"):
        return orjson.dumps
    return value_encoder(kafka, topic, shape)


def produce_dump(kafka: KafkaSettings, dump: Path, topic: str, shape: Shape = CLICK) -> int:
    """Produce a kcat -J dump as it was: same partitions, keys, payloads and timestamps;
    with a Schema Registry format, each JSON payload in that format (records of `shape`)."""
    p = producer(kafka)
    encode = None if kafka.value_format in ("json", "auto") else encoder(kafka, topic, shape)
    n = 0
    with dump.open("rb") as lines:
        for line in lines:
            if line.isspace():
                continue
            _produce_line(p, line, topic, encode)
            n += 1
    _flush(p)
    return n


def replay_to_new_topics(
    bootstrap: str, replay_dir: Path, prefix: str, partitions: int = 4
) -> KafkaSettings:
    """A replay directory's two dumps produced to new topics `PREFIX-clickstream-N` and
    `PREFIX-user-clickstream-N` (N: the time now), for a benchmark or a profile; the
    settings that read them to their end."""
    suffix = str(int(time.time()))
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        stop_at_end=True,
        clickstream_topic=f"{prefix}-clickstream-{suffix}",
        user_clickstream_topic=f"{prefix}-user-clickstream-{suffix}",
    )
    produce_replay(kafka, replay_dir, partitions)
    return kafka


def produce_replay(kafka: KafkaSettings, replay_dir: Path, partitions: int) -> None:
    """Create the clickstream and USER_CLICKSTREAM topics of `kafka` and produce a replay
    directory's two dumps into them (as `tools.replay_gen` writes them)."""
    create_topics(
        kafka, {kafka.clickstream_topic: {}, kafka.user_clickstream_topic: {}}, partitions
    )
    produce_dump(kafka, replay_dir / "clickstream.jsonl", kafka.clickstream_topic, CLICK)
    produce_dump(
        kafka,
        replay_dir / "user_clickstream.jsonl",
        kafka.user_clickstream_topic,
        ksql_shape(load_streams()["user_clickstream"].columns),
    )


def _produce_line(
    p: Producer, line: bytes, topic: str, encode: Callable[[Any], bytes] | None
) -> None:
    rec = orjson.loads(line)
    payload = rec.get("payload")
    if payload is not None:
        payload = payload.encode() if encode is None else encode(orjson.loads(payload))
    send(
        p,
        topic,
        value=payload,
        key=None if rec.get("key") is None else rec["key"].encode(),
        partition=rec["partition"],
        timestamp=rec["ts"],
    )


def send(p: Producer, topic: str, **kwargs: object) -> None:
    """Produce, waiting for deliveries when the local queue is full."""
    while True:
        try:
            p.produce(topic, **kwargs)  # type: ignore[arg-type]
            return
        except BufferError:
            p.poll(0.1)


def _flush(p: Producer) -> None:
    remaining = p.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records were not delivered within 60 s")


def produce_datagen(
    kafka: KafkaSettings,
    rate: float,
    count: int | None,
    duration: float | None,
    partitions: int,
    seed: int | None = None,
    progress: bool = True,
) -> int:
    create_topics(
        kafka,
        {
            kafka.clickstream_topic: {},
            kafka.users_topic: {"cleanup.policy": "compact"},
            "clickstream_codes": {},
            kafka.user_clickstream_topic: {},  # what dataflows.enrich writes
        },
        partitions,
    )
    gen = datagen.ClickGenerator(seed)
    p = producer(kafka)
    click_value = encoder(kafka, kafka.clickstream_topic, CLICK)
    user_value = encoder(kafka, kafka.users_topic, USER)
    for code, definition in datagen.CODES.items():
        p.produce(
            "clickstream_codes",
            key=str(code).encode(),
            value=orjson.dumps({"code": code, "definition": definition}),
        )
    early = range(1, 31)
    late = range(31, datagen.MAX_USER_ID + 1)

    def users(ids: Iterable[int]) -> None:
        for uid in ids:
            p.produce(kafka.users_topic, key=str(uid).encode(), value=user_value(gen.user(uid)))

    users(early)
    _flush(p)
    total = count if count is not None else (int(rate * duration) if duration else None)
    started = time.monotonic()
    n = 0
    last_report = 0.0
    while total is None or n < total:
        due = int((time.monotonic() - started) * rate)
        if total is not None:
            due = min(due, total)
        while n < due:
            click = gen.click()
            send(
                p,
                kafka.clickstream_topic,
                key=str(click["ip"]).encode(),
                value=click_value(click),
            )
            n += 1
            if total is not None and n == total // 2:
                users(late)
        p.poll(0)
        now = time.monotonic()
        if progress and now - last_report >= 1.0:
            last_report = now
            of = f"/{total:,}" if total is not None else ""
            print(
                f"\rproduced {n:,}{of} clicks at {n / max(now - started, 1e-9):,.0f}/s",
                end="",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(min(0.01, max(0.0, (n + 1) / rate - (time.monotonic() - started))))
    if total is None or total < 2:
        users(late)
    _flush(p)
    if progress:
        print(f"\rproduced {n:,} clicks in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return n


def total_records(kafka: KafkaSettings, topic: str) -> int:
    """Records in a topic now (sum over partitions of high - low offsets)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_config(kafka, **{"group.id": "count"}))
    try:
        md = consumer.list_topics(topic, timeout=20).topics[topic]
        total = 0
        for p in md.partitions:
            low, high = end_offsets(consumer, TopicPartition(topic, p))
            total += high - low
        return total
    finally:
        consumer.close()


def wait_enriched(kafka: KafkaSettings, timeout_s: float) -> None:
    """Wait until USER_CLICKSTREAM holds one record per click (the join caught up)."""
    deadline = time.monotonic() + timeout_s
    want = total_records(kafka, kafka.clickstream_topic)
    while (have := total_records(kafka, kafka.user_clickstream_topic)) < want:
        if time.monotonic() > deadline:
            fail(f"enrichment wrote {have} of {want} records in {timeout_s:.0f} s")
        time.sleep(1)
    print(f"enrichment caught up: {have} records", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description="produce datagen clickstream records")
    parser.add_argument("--rate", type=float, default=100.0, help="clicks per second")
    parser.add_argument("--count", type=int, help="clicks to produce")
    parser.add_argument("--duration", type=float, help="seconds to produce for")
    parser.add_argument("--partitions", type=int, default=4, help="for topics it creates")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--format",
        choices=[f for f in VALUE_FORMATS if f != "auto"],
        help="the values' format (default: KAFKA_VALUE_FORMAT; JSON for auto)",
    )
    parser.add_argument(
        "--wait-enriched",
        type=float,
        metavar="SECONDS",
        help="instead: wait until the users join has caught up",
    )
    args = parser.parse_args()
    if args.count is None and args.duration is None:
        args.duration = 60.0
    try:
        env = {**os.environ, **({"KAFKA_VALUE_FORMAT": args.format} if args.format else {})}
        kafka = KafkaSettings.from_env(env)
    except ConfigError as ex:
        fail(str(ex))
    if args.wait_enriched is not None:
        wait_enriched(kafka, args.wait_enriched)
        return
    try:
        produce_datagen(kafka, args.rate, args.count, args.duration, args.partitions, args.seed)
    except ConfigError as ex:  # a schema the registry refused
        fail(str(ex))


if __name__ == "__main__":
    main()
