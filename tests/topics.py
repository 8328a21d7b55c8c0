"""Reading a whole Kafka topic back, for tests that check what a dataflow wrote."""

from __future__ import annotations

from typing import NamedTuple

from confluent_kafka import Consumer, TopicPartition

from kafka_client.admin import end_offsets


class Record(NamedTuple):
    partition: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: dict[str, str | bytes | None]


def read_topic(bootstrap: str, topic: str) -> list[Record]:
    """Every record now in `topic`, partition by partition."""
    # read_uncommitted: a read_committed end offset trails records whose transaction
    # markers are still on their way; no test aborts a transaction
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "t", "isolation.level": "read_uncommitted"}
    )
    out = []
    try:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = end_offsets(consumer, TopicPartition(topic, p))
            consumer.assign([TopicPartition(topic, p, low)])
            # by offset, not by count: a transaction marker takes an offset too
            while low < high:
                messages = consumer.consume(1_000, timeout=1)
                for msg in messages:
                    assert msg.error() is None
                    headers = dict(msg.headers() or [])
                    out.append(Record(p, msg.key(), msg.value(), msg.timestamp()[1], headers))
                    low = (msg.offset() or 0) + 1
                if not messages:
                    low = max(low, consumer.position([TopicPartition(topic, p)])[0].offset)
    finally:
        consumer.close()
    return out
