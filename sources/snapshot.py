"""A bounded snapshot of a stream's topic, decoded by its declaration: what `just query`
shows as the stream's view (`select * from clickstream limit 10`), as the notebook's
first cells did.

```python
snap = read_snapshot(kafka, stream, Bounds(newest=1_000))
snap.frame          # a Polars frame: the declared columns, then key, topic, partition,
                    # offset and timestamp (UTC)
snap.summary()      # "clickstream: 2,000 records of topic clickstream (the newest 1,000 ..."
```

Never the whole topic by surprise: by default the newest records of each partition,
or those whose record timestamps fall in a time range. Records go through the same
`Parser` as a dataflow's, so a view shows what a table would count; dead letters are
counted and left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec
from confluent_kafka import Consumer, TopicPartition

from events.parse import Parser
from events.schema import RawBatch, RawRecord
from events.streams import KAFKA_COLUMNS, Stream, TimesOf, event_type, times_of
from kafka_client.admin import check_topics, client_config, end_offsets
from kafka_client.settings import KafkaSettings
from operators.batches import Origins
from sources.schemas import writer_schemas


@dataclass(frozen=True)
class Bounds:
    """Which records: the `newest` of each partition, or those stamped in
    [`since_ms`, `until_ms`) (either may be open)."""

    newest: int = 1_000
    since_ms: int | None = None
    until_ms: int | None = None

    @property
    def by_time(self) -> bool:
        return self.since_ms is not None or self.until_ms is not None

    def describe(self) -> str:
        if not self.by_time:
            return f"the newest {self.newest:,} of each"
        since = "the start" if self.since_ms is None else _iso(self.since_ms)
        until = "now" if self.until_ms is None else _iso(self.until_ms)
        return f"stamped from {since} until {until}"


@dataclass(frozen=True)
class Snapshot:
    stream: str
    topic: str
    partitions: int
    bounds: Bounds
    frame: Any  # polars.DataFrame
    dead: int

    def summary(self) -> str:
        """One line: how much was read, from where."""
        dead = f"; {self.dead:,} dead letters left out" if self.dead else ""
        return (
            f"{self.stream}: {self.frame.height:,} records of topic {self.topic} "
            f"({self.partitions} partitions, {self.bounds.describe()}){dead}"
        )


def read_snapshot(kafka: KafkaSettings, stream: Stream, bounds: Bounds) -> Snapshot:
    """The records of `stream` within `bounds`, decoded; `ConfigError` for a topic that
    cannot be read."""
    import polars as pl

    topic = kafka.topic_of(stream.name, stream.topic)
    partitions = check_topics(kafka, [topic])[topic]
    value_format = stream.value_format or kafka.value_format
    parser = Parser(
        event_type(stream),
        f"snapshot {stream.name}",
        log_every_s=1e9,
        value_format=value_format,
        permissive=True,
        kafka_columns=tuple(KAFKA_COLUMNS),
    )
    schemas = (
        writer_schemas(kafka.registry)
        if kafka.registry is not None and value_format != "json"
        else None
    )
    payload_times = None if stream.event_time is None else times_of(stream.event_time)
    events: list[Any] = []
    dead = 0
    consumer = Consumer(client_config(kafka, **{"group.id": "clickstream-snapshot"}))
    try:
        for partition, (start, stop) in _ranges(consumer, topic, partitions, bounds).items():
            found = _batches(consumer, topic, partition, start, stop, bounds, payload_times)
            for batch in found:
                if schemas is not None:
                    batch = _with_decoders(batch, schemas)
                parsed = parser(batch)
                events += parsed.events.events
                dead += len(parsed.dead)
    finally:
        consumer.close()
    shape = event_type(stream)
    names = [f.name for f in msgspec.structs.fields(shape)]
    rows = [msgspec.structs.astuple(e) for e in events]
    frame = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    frame = frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
    return Snapshot(stream.name, topic, partitions, bounds, frame, dead)


def _ranges(
    consumer: Consumer, topic: str, partitions: int, bounds: Bounds
) -> dict[int, tuple[int, int]]:
    """The offsets [start, stop) to read of each partition."""
    ends = {p: end_offsets(consumer, TopicPartition(topic, p)) for p in range(partitions)}
    if not bounds.by_time:
        return {p: (max(low, high - bounds.newest), high) for p, (low, high) in ends.items()}
    starts = _offsets_at(consumer, topic, ends, bounds.since_ms)
    return {p: (starts[p], high) for p, (_, high) in ends.items()}


def _offsets_at(
    consumer: Consumer, topic: str, ends: dict[int, tuple[int, int]], at_ms: int | None
) -> dict[int, int]:
    """The first offset of each partition stamped at or after `at_ms` (its low offset
    for None, its high one when none is)."""
    if at_ms is None:
        return {p: low for p, (low, _) in ends.items()}
    asked = [TopicPartition(topic, p, at_ms) for p in ends]
    found = consumer.offsets_for_times(asked, timeout=30)
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition][1] for tp in found}


def _batches(
    consumer: Consumer,
    topic: str,
    partition: int,
    start: int,
    stop: int,
    bounds: Bounds,
    payload_times: TimesOf | None,
) -> Any:
    """The records of one partition from `start` to before `stop` (or past `until_ms`),
    as `RawBatch`es."""
    if start >= stop:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    offset = start
    deadline = time.monotonic() + 60
    while offset < stop:
        messages = [m for m in consumer.consume(2_000, timeout=1.0) if m.error() is None]
        if not messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}#{partition}: no records after offset {offset}")
            continue
        deadline = time.monotonic() + 60
        messages = [m for m in messages if m.offset() < stop]  # type: ignore[operator]
        offset = messages[-1].offset() + 1 if messages else stop  # type: ignore[operator]
        if bounds.until_ms is not None:
            inside = [m for m in messages if m.timestamp()[1] < bounds.until_ms]
            done = len(inside) < len(messages)
            messages = inside
        else:
            done = False
        if messages:
            yield _raw_batch(topic, partition, messages, payload_times)
        if done:
            return
    consumer.unassign()


def _raw_batch(
    topic: str, partition: int, messages: list[Any], payload_times: TimesOf | None
) -> RawBatch:
    """The records as a source reads them: timed by the record timestamp, or by the
    payload's time column (a value without one is a dead letter that says so)."""
    values = [m.value() for m in messages]
    offsets = [m.offset() for m in messages]
    keys = [m.key() for m in messages]
    times = [m.timestamp()[1] for m in messages]
    special: dict[int, RawRecord] = {}
    if payload_times is not None:
        stamps = times
        times, no_time = payload_times(values)
        for i, reason in no_time.items():
            special[i] = RawRecord(
                topic, partition, offsets[i], stamps[i], keys[i], values[i], reason
            )
    return RawBatch(
        f"{topic}#{partition}",
        1,
        values,
        times,
        list(times),
        max(times),
        origins=Origins(topic, partition, offsets),
        keys=keys,
        special=special,
    )


def _with_decoders(batch: RawBatch, schemas: Any) -> RawBatch:
    from dataclasses import replace

    return replace(batch, decoders=schemas.for_values(batch.events))


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
