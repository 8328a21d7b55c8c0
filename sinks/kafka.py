"""Produce records to a Kafka topic, keeping each record's own timestamp.

A `FixedPartitionedSink` so that `snapshot()` runs at every epoch end: it waits
until every record of the epoch is acknowledged, so a committed epoch never loses
output (at least once; the idempotent producer removes retry duplicates, and a
crash can repeat the records of the epoch it interrupted).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, Producer

from config import KafkaSettings
from sources.kafka import client_config

log = logging.getLogger(__name__)


class KafkaRecord(NamedTuple):
    key: bytes | None
    value: bytes
    timestamp_ms: int


class _TopicPartition(StatefulSinkPartition[list[KafkaRecord], None]):
    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.failures: list[str] = []
        self.producer = Producer(
            client_config(
                kafka, **{"enable.idempotence": True, "linger.ms": 10, "compression.type": "lz4"}
            )
        )

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failures.append(err.str())

    def write_batch(self, values: list[list[KafkaRecord]]) -> None:
        produce = self.producer.produce
        for records in values:
            for key, value, ts in records:
                while True:
                    try:
                        produce(
                            self.topic,
                            value=value,
                            key=key,
                            timestamp=ts,
                            on_delivery=self._delivered,
                        )
                        break
                    except BufferError:  # local queue full: let deliveries drain
                        self.producer.poll(0.1)
        self.producer.poll(0)
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self.failures:
            raise RuntimeError(f"producing to {self.topic} failed: {self.failures[0]}")

    def snapshot(self) -> None:
        while self.producer.flush(10):
            log.warning("waiting for Kafka to acknowledge records to %s", self.topic)
        self._raise_failures()

    def close(self) -> None:
        self.snapshot()


class KafkaTopicSink(FixedPartitionedSink[list[KafkaRecord], None]):
    """Writes lists of `KafkaRecord` to `topic`; keys are sink partitions ("0".."parts-1")."""

    def __init__(self, kafka: KafkaSettings, topic: str, parts: int = 2) -> None:
        self.kafka = kafka
        self.topic = topic
        self.parts = parts

    def list_parts(self) -> list[str]:
        return [str(i) for i in range(self.parts)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TopicPartition:
        return _TopicPartition(self.kafka, self.topic)
