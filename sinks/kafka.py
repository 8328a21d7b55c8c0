"""Produce records to a Kafka topic exactly once across crashes, keeping each record's
own timestamp.

Each record carries the place its input was read from (an `origin` header:
`topic/partition/offset`) and, under `python -m bytewax.run`, the fencing token of
the process that wrote it (a `lease-token` header, see `ownership`). A crash
repeats the input read since the last snapshot, and with it some records that were
already written. So on start a sink partition
reads what was written after its last snapshot (on a first start: the whole topic)
and does not write those inputs again. Inputs it has not seen again yet stay in its
snapshots, so a second crash during the replay forgets nothing. That is exact
because the dataflow's output for an input does not depend on timing, and because
a record's topic partition comes from its key, the same way every time. Kafka
transactions would need the sink to know when Bytewax has committed an epoch,
which it is not told.

A process paused past its lease (SIGSTOP, a frozen VM) must not write once woken,
but librdkafka's threads send what was queued before the pause as soon as it wakes,
before any Python runs. So a record may only be queued while the lease is trusted for
librdkafka's whole `message.timeout.ms` to come (`ownership.fence_until`, checked for
every record), and that timeout is kept at a quarter of the lease timeout
(`send_window_s`): on waking, the queued records have expired instead of landing
after a replacement read the topic back. The price: a broker that acknowledges
nothing for that long (7.5 s with the default 30 s lease) stops the process with one
line, and a restart resumes exactly.

A `FixedPartitionedSink` so that `snapshot()` runs at every epoch end: it waits
until every record of the epoch is acknowledged and keeps, per topic partition,
the offset after the last record it wrote.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from events.encoders import ENCODERS, Shape
from kafka_client.admin import client_config, end_offsets, visible_partitions
from kafka_client.schema_registry import register_value_schema
from kafka_client.settings import KafkaSettings
from monitoring.metrics import SINK_KEPT_ORIGINS
from operators.batches import Origin
from ownership import fence, fence_until
from process import keep_thread_state, stop_on_error
from setting import ConfigError

log = logging.getLogger(__name__)

ORIGIN_HEADER = "origin"
# the fencing token of the lease holder that wrote a record (see `ownership`)
LEASE_HEADER = "lease-token"

# output partition -> the offset after the last record this sink partition saw acknowledged
Offsets = dict[int, int]
# (input topic, input partition) -> offsets of inputs whose record is already in the topic
Written = dict[tuple[str, int], set[int]]


WRITE_DEFAULTS: dict[str, Any] = {
    # a few ms of batching and lz4: fewer, smaller requests for the same records
    "linger.ms": 10,
    "compression.type": "lz4",
}


# librdkafka's default message.timeout.ms (its alias: delivery.timeout.ms)
_LIBRDKAFKA_MESSAGE_TIMEOUT_MS = 300_000


def send_window_s(lease_timeout_s: float) -> float:
    """How long librdkafka may go on trying to send a record after it was queued: a
    quarter of the lease timeout.

    A process paused past its lease keeps its queued records, and librdkafka's threads
    send them on waking, before any Python runs. A record queued while the lease was
    trusted (until three quarters of the timeout after the last renewal) and given up
    a quarter later has expired before another process may take over (the timeout),
    so it can never land after a replacement read the topic back."""
    return lease_timeout_s / 4


def writer_config(kafka: KafkaSettings, lease_timeout_s: float) -> dict[str, Any]:
    """The config of a sink's producer: `WRITE_DEFAULTS`, then the user's settings (a line
    of `KAFKA_CONFIG_FILE` overrides a default), then what exactly once needs: an
    idempotent producer, so that librdkafka's own retries never write a record twice,
    and a `message.timeout.ms` no longer than `send_window_s` (a longer one asked for
    is lowered, with a warning)."""
    config = client_config(kafka, WRITE_DEFAULTS, **{"enable.idempotence": True})
    window_ms = max(1, int(send_window_s(lease_timeout_s) * 1000))
    asked = [config.pop(k) for k in ("message.timeout.ms", "delivery.timeout.ms") if k in config]
    try:
        asked_ms = min((int(v) for v in asked), default=_LIBRDKAFKA_MESSAGE_TIMEOUT_MS)
        linger_ms = float(config.get("linger.ms", 0))
    except ValueError as ex:
        raise ConfigError(f"invalid Kafka settings: {ex}") from None
    if asked and (asked_ms == 0 or asked_ms > window_ms):  # 0: no timeout
        log.warning(
            "message.timeout.ms %d lowered to %d (a quarter of CLICKSTREAM_LEASE_TIMEOUT): a "
            "record must expire before another process may take the lease over; raise "
            "the lease timeout to ride out longer broker outages",
            asked_ms,
            window_ms,
        )
    timeout_ms = window_ms if asked_ms == 0 else min(asked_ms, window_ms)
    if linger_ms >= timeout_ms:
        raise ConfigError(
            f"invalid Kafka settings: linger.ms {linger_ms:g} must be below message.timeout.ms "
            f"{timeout_ms} (at most a quarter of CLICKSTREAM_LEASE_TIMEOUT)"
        )
    config["message.timeout.ms"] = timeout_ms
    return config


class State(NamedTuple):
    """What a restarted Kafka sink partition needs: where to read back from, and what it
    knows already (saved as a plain tuple, see `operators.clock.ClockState`)."""

    saved: Offsets
    written: Written


class KafkaRecord(NamedTuple):
    key: bytes | None
    value: bytes
    timestamp_ms: int
    origin: Origin | None = None  # where its input was read; without one, never deduplicated


def value_encoder(kafka: KafkaSettings, topic: str, shape: Shape) -> Callable[[Any], bytes]:
    """How the values we write to `topic` are encoded (a struct or a dict in, bytes out):
    JSON for `KAFKA_VALUE_FORMAT` `json` and `auto`; otherwise that Schema Registry
    format, its schema registered under `<topic>-value` first, as ksqlDB does."""
    if kafka.value_format in ("json", "auto"):
        return msgspec.json.encode
    if kafka.registry is None:  # KafkaSettings refuses this; for the type checker
        raise ValueError("a Schema Registry format needs a registry")
    encoder = ENCODERS[kafka.value_format](shape)
    schema_id = register_value_schema(
        kafka.registry, topic, encoder.schema_type, encoder.schema_str
    )

    def encode(record: Any) -> bytes:
        return encoder.encode(schema_id, msgspec.to_builtins(record))

    return encode


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


class _TopicPartition(StatefulSinkPartition[list[KafkaRecord], tuple]):
    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        name: str,
        resume: tuple | None,
        owns: Callable[[tuple[str, int]], bool],
        slow_writes_s: float = 0.0,
        dataflow: str = "",
        lease_timeout_s: float = 30.0,
    ) -> None:
        self.topic = topic
        self.name = name
        self.slow_writes_s = slow_writes_s
        self.failures: list[str] = []
        self.acked: Offsets = {}
        config = writer_config(kafka, lease_timeout_s)
        # librdkafka may send a record this long after it was queued (see `send_window_s`)
        self.send_window_s = config["message.timeout.ms"] / 1000
        self.producer = Producer(config)
        self.partitions = self._partition_count()
        saved, pending = State._make(resume) if resume is not None else State({}, {})
        self.written: Written = {k: set(offsets) for k, offsets in pending.items()}
        found, self.saved = self._read_back(kafka, saved)
        for k, offsets in found.items():
            # what other sink partitions wrote never comes here: keeping it would only
            # grow the state (a first start reads the whole topic)
            if owns(k):
                self.written.setdefault(k, set()).update(offsets)
        if self.written:
            log.info(
                "kafka sink %s: %d records already in %s will not be written again",
                self.name,
                sum(map(len, self.written.values())),
                self.topic,
            )
        self.skipped = 0
        self.kept = SINK_KEPT_ORIGINS.labels(dataflow, topic, name)
        self.kept.set(sum(map(len, self.written.values())))

    def _partition_count(self) -> int:
        partitions = visible_partitions(self.producer, self.topic)
        if partitions is None:
            raise RuntimeError(f"Kafka topic {self.topic!r} does not exist")
        return partitions

    def _read_back(self, kafka: KafkaSettings, saved: Offsets) -> tuple[Written, Offsets]:
        """Origins of the records in the topic after `saved` (all of it when not saved),
        and the topic's end offsets."""
        # read_uncommitted: a read_committed consumer's end offset is the last stable
        # offset, which trails records whose transaction markers are not written yet
        # (they are written after commit_transaction() returns). Reading to the high
        # watermark sees every record already in the topic, so none is written twice.
        consumer = Consumer(
            client_config(
                kafka,
                **{
                    "group.id": "clickstream-sink",
                    "enable.auto.commit": False,
                    "isolation.level": "read_uncommitted",
                },
            )
        )
        try:
            ends: Offsets = {}
            starts: list[TopicPartition] = []
            for p in range(self.partitions):
                low, high = end_offsets(consumer, TopicPartition(self.topic, p))
                ends[p] = high
                start = max(saved.get(p, low), low)
                if start < high:
                    starts.append(TopicPartition(self.topic, p, start))
            found: Written = {}
            if starts:
                consumer.assign(starts)
                # next offset to read per partition still to be read to its end
                left = {tp.partition: tp.offset for tp in starts}
                quiet_since = time.monotonic()
                while left:
                    # consume() waits until it has as many as asked for: ask for what is left
                    want = min(1000, sum(ends[p] - at for p, at in left.items()))
                    messages = consumer.consume(max(want, 1), timeout=1)
                    if messages:
                        quiet_since = time.monotonic()
                    else:
                        # offsets without a record to read (transaction markers) end a
                        # partition too: past its end is past its end
                        positions = [TopicPartition(self.topic, p) for p in left]
                        for tp in consumer.position(positions):
                            if tp.offset >= ends[tp.partition]:
                                del left[tp.partition]
                    if left and time.monotonic() - quiet_since > 60:
                        raise RuntimeError(
                            f"reading back {self.topic} to avoid duplicates: no records for 60 s"
                        )
                    for msg in messages:
                        self._collect(msg, found, ends, left)
            return found, ends
        finally:
            consumer.close()

    @staticmethod
    def _collect(msg: Message, found: Written, ends: Offsets, left: dict[int, int]) -> None:
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
                    found.setdefault(origin[:2], set()).add(origin[2])
        at, offset = msg.partition(), msg.offset()
        if at is not None and offset is not None and at in left:
            if offset + 1 >= ends[at]:
                del left[at]
            else:
                left[at] = offset + 1

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append(err.str())
            return
        partition, offset = msg.partition(), msg.offset()
        if partition is not None and offset is not None and offset >= self.acked.get(partition, 0):
            self.acked[partition] = offset + 1

    def _already_written(self, origin: Origin) -> bool:
        topic, partition, offset = origin
        offsets = self.written.get((topic, partition))
        if offsets is None or offset not in offsets:
            return False
        # each input comes back once: forget it, so the check costs nothing once all have
        offsets.discard(offset)
        if not offsets:
            del self.written[(topic, partition)]
        return True

    def write_batch(self, values: list[list[KafkaRecord]]) -> None:
        produce, parts, window = self.producer.produce, self.partitions, self.send_window_s
        now = time.monotonic
        token, send_by = fence_until(window)
        lease = [(LEASE_HEADER, str(token).encode())] if token else []
        for records in values:
            for key, value, ts, origin in records:
                headers: list[tuple[str, str | bytes | None]] | None = None
                if origin is not None:
                    if self.written and self._already_written(origin):
                        self.skipped += 1
                        continue
                    headers = [(ORIGIN_HEADER, _origin_header(origin)), *lease]
                elif lease:
                    headers = [*lease]
                while True:
                    # Checked for every record, not once a batch: a pause in the middle
                    # of this loop must not queue the rest after the lease was taken over
                    if now() >= send_by:
                        _, send_by = fence_until(window)  # the token stays while held
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
        if self.slow_writes_s:
            # test aid: slow enough to be killed mid-run. Per record, not per call: Bytewax
            # hands a slow sink more per call, so a sleep per call does not bound the rate
            # (the enrich crash test then finished before its kills, under load)
            time.sleep(self.slow_writes_s * sum(map(len, values)))

    def _raise_failures(self) -> None:
        if self.failures:
            # records that expired while this process was paused past its lease: the
            # lease's line says why, not the timeout's
            fence()
            timed_out = "timed out" in self.failures[0].lower()
            raise RuntimeError(
                f"producing to {self.topic} failed: {self.failures[0]}"
                + (
                    f" (not acknowledged within message.timeout.ms, {self.send_window_s:g} s, "
                    "at most a quarter of CLICKSTREAM_LEASE_TIMEOUT; a restart resumes exactly)"
                    if timed_out
                    else ""
                )
            )

    def snapshot(self) -> tuple:
        fence()
        while self.producer.flush(10):
            log.warning("waiting for Kafka to acknowledge records to %s", self.topic)
        self._raise_failures()
        self.saved.update(self.acked)
        self.kept.set(sum(map(len, self.written.values())))
        # Inputs after this snapshot may still include some written before an earlier
        # crash and not seen again yet: they stay in the state until they come back.
        return tuple(State(dict(self.saved), {k: set(o) for k, o in self.written.items()}))

    def close(self) -> None:
        with stop_on_error(f"kafka sink {self.name}: closing"):
            self.snapshot()
        if self.skipped:
            log.info(
                "kafka sink %s: %d records not written again after a restart",
                self.name,
                self.skipped,
            )


class KafkaTopicSink(FixedPartitionedSink[list[KafkaRecord], tuple]):
    """Writes lists of `KafkaRecord` to `topic`; keys are sink partitions ("0".."parts-1").

    Route all records of one input partition to the same sink partition (see
    `part_of`): a restarted sink partition only looks for repeats of its own records.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        parts: int = 2,
        slow_writes_s: float = 0.0,
        dataflow: str = "",
        lease_timeout_s: float = 30.0,
    ) -> None:
        self.dataflow = dataflow
        self.kafka = kafka
        self.topic = topic
        self.parts = parts
        self.slow_writes_s = slow_writes_s
        self.lease_timeout_s = lease_timeout_s  # CLICKSTREAM_LEASE_TIMEOUT

    def part_of(self, record: KafkaRecord) -> str:
        return str(0 if record.origin is None else self._part_of_input(record.origin[1]))

    def _part_of_input(self, input_partition: int) -> int:
        """The sink partition that writes every record of an input partition."""
        return input_partition % self.parts

    def group(self, records: list[KafkaRecord]) -> list[tuple[str, list[KafkaRecord]]]:
        """`records` keyed by their sink partition."""
        parts: defaultdict[str, list[KafkaRecord]] = defaultdict(list)
        for record in records:
            parts[self.part_of(record)].append(record)
        return list(parts.items())

    def list_parts(self) -> list[str]:
        keep_thread_state()  # Bytewax calls this on every worker as it builds the dataflow
        return [str(i) for i in range(self.parts)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple | None
    ) -> _TopicPartition:
        name = f"{step_id}/{for_part}"
        part = int(for_part)

        def owns(input_partition: tuple[str, int]) -> bool:
            return self._part_of_input(input_partition[1]) == part

        return _TopicPartition(
            self.kafka,
            self.topic,
            name,
            resume_state,
            owns,
            self.slow_writes_s,
            self.dataflow,
            self.lease_timeout_s,
        )
