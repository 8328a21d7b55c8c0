"""Produce records to a Kafka topic exactly once across crashes, keeping each record's
own timestamp.

Each record carries the place its input was read from (an `origin` header:
`topic/partition/offset`). A crash repeats the input read since the last snapshot,
and with it some records that were already written. So on start a sink partition
reads what was written after its last snapshot (on a first start: the whole topic)
and does not write those inputs again. That is exact because the dataflow's output
for an input does not depend on timing, and because a record's topic partition
comes from its key, the same way every time. Kafka transactions would need the
sink to know when Bytewax has committed an epoch, which it is not told.

A `FixedPartitionedSink` so that `snapshot()` runs at every epoch end: it waits
until every record of the epoch is acknowledged and keeps, per topic partition,
the offset after the last record it wrote.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import defaultdict
from typing import NamedTuple

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from config import KafkaSettings
from operators.batches import Origin
from sources.kafka import client_config

log = logging.getLogger(__name__)

ORIGIN_HEADER = "origin"

# output partition -> the offset after the last record this sink partition saw acknowledged
Offsets = dict[int, int]


class KafkaRecord(NamedTuple):
    key: bytes | None
    value: bytes
    timestamp_ms: int
    origin: Origin | None = None  # where its input was read; without one, never deduplicated


def partition_of(key: bytes | None, partitions: int) -> int:
    """librdkafka's default for a keyed record (`consistent_random`: CRC32 of the key),
    chosen here so that a repeated record is looked for where it was written."""
    return zlib.crc32(key or b"") % partitions


def _origin_header(origin: Origin) -> bytes:
    topic, partition, offset = origin
    return f"{topic}/{partition}/{offset}".encode()


def _parse_origin(raw: bytes) -> Origin | None:
    try:
        topic, partition, offset = raw.decode().rsplit("/", 2)
        return topic, int(partition), int(offset)
    except ValueError:
        return None


class _TopicPartition(StatefulSinkPartition[list[KafkaRecord], Offsets]):
    def __init__(self, kafka: KafkaSettings, topic: str, name: str, resume: Offsets | None) -> None:
        self.topic = topic
        self.name = name
        self.failures: list[str] = []
        self.acked: Offsets = {}
        self.producer = Producer(
            client_config(
                kafka, **{"enable.idempotence": True, "linger.ms": 10, "compression.type": "lz4"}
            )
        )
        self.partitions = len(self.producer.list_topics(topic, timeout=30).topics[topic].partitions)
        if not self.partitions:
            raise RuntimeError(f"Kafka topic {topic!r} does not exist")
        self.written, self.saved = self._written_since(kafka, resume or {})
        self.skipped = 0

    def _written_since(self, kafka: KafkaSettings, saved: Offsets) -> tuple[set[Origin], Offsets]:
        """Origins of the records in the topic after `saved` (all of it when not saved),
        and the topic's end offsets."""
        consumer = Consumer(
            client_config(kafka, **{"group.id": "clickstream-sink", "enable.auto.commit": False})
        )
        try:
            ends: Offsets = {}
            starts: list[TopicPartition] = []
            for p in range(self.partitions):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=30
                )
                ends[p] = high
                start = max(saved.get(p, low), low)
                if start < high:
                    starts.append(TopicPartition(self.topic, p, start))
            written: set[Origin] = set()
            if starts:
                consumer.assign(starts)
                left = {tp.partition for tp in starts}
                quiet_since = time.monotonic()
                while left:
                    messages = consumer.consume(1000, timeout=1)
                    if messages:
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since > 60:
                        raise RuntimeError(
                            f"reading back {self.topic} to avoid duplicates: no records for 60 s"
                        )
                    for msg in messages:
                        self._collect(msg, written, ends, left)
            if written:
                log.info(
                    "kafka sink %s: %d records already in %s after the last snapshot; "
                    "their inputs are not written again",
                    self.name,
                    len(written),
                    self.topic,
                )
            return written, ends
        finally:
            consumer.close()

    @staticmethod
    def _collect(msg: Message, written: set[Origin], ends: Offsets, left: set[int]) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"reading back {msg.topic()}: {err.str()}")
            return
        headers = msg.headers() or []
        for name, raw in headers if isinstance(headers, list) else headers.items():
            if name == ORIGIN_HEADER and isinstance(raw, bytes):
                origin = _parse_origin(raw)
                if origin is not None:
                    written.add(origin)
        partition, offset = msg.partition(), msg.offset()
        if partition is not None and offset is not None and offset + 1 >= ends[partition]:
            left.discard(partition)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append(err.str())
            return
        partition, offset = msg.partition(), msg.offset()
        if partition is not None and offset is not None and offset >= self.acked.get(partition, 0):
            self.acked[partition] = offset + 1

    def write_batch(self, values: list[list[KafkaRecord]]) -> None:
        produce, written, parts = self.producer.produce, self.written, self.partitions
        for records in values:
            for key, value, ts, origin in records:
                headers: list[tuple[str, str | bytes | None]] | None = None
                if origin is not None:
                    if written and origin in written:
                        written.discard(origin)  # once the repeats are past, the set is empty
                        self.skipped += 1
                        continue
                    headers = [(ORIGIN_HEADER, _origin_header(origin))]
                while True:
                    try:
                        produce(
                            self.topic,
                            value=value,
                            key=key,
                            partition=partition_of(key, parts),
                            timestamp=ts,
                            headers=headers,
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

    def snapshot(self) -> Offsets:
        while self.producer.flush(10):
            log.warning("waiting for Kafka to acknowledge records to %s", self.topic)
        self._raise_failures()
        self.saved.update(self.acked)
        return dict(self.saved)

    def close(self) -> None:
        self.snapshot()
        if self.skipped:
            log.info(
                "kafka sink %s: %d records not written again after a restart",
                self.name,
                self.skipped,
            )


class KafkaTopicSink(FixedPartitionedSink[list[KafkaRecord], Offsets]):
    """Writes lists of `KafkaRecord` to `topic`; keys are sink partitions ("0".."parts-1").

    Route all records of one input partition to the same sink partition (see
    `part_of`): a restarted sink partition only looks for repeats of its own records.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, parts: int = 2) -> None:
        self.kafka = kafka
        self.topic = topic
        self.parts = parts

    def part_of(self, record: KafkaRecord) -> str:
        return str(0 if record.origin is None else record.origin[1] % self.parts)

    def group(self, records: list[KafkaRecord]) -> list[tuple[str, list[KafkaRecord]]]:
        """`records` keyed by their sink partition."""
        parts: defaultdict[str, list[KafkaRecord]] = defaultdict(list)
        for record in records:
            parts[self.part_of(record)].append(record)
        return list(parts.items())

    def list_parts(self) -> list[str]:
        return [str(i) for i in range(self.parts)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Offsets | None
    ) -> _TopicPartition:
        return _TopicPartition(self.kafka, self.topic, f"{step_id}/{for_part}", resume_state)
