"""Read a Kafka topic from the earliest offset, one Bytewax partition per Kafka partition.

Like Bytewax's `KafkaSource`, it assigns partitions and keeps the next offset of each
partition as its recovery state, so a resumed run continues exactly after the last
committed batch. Unlike it, each partition reports its event-time progress (the
Kafka record timestamps) for the watermark, turns idle after `idle_timeout_s`
without records so a quiet partition stops holding the others back, and can stop at
the end offsets seen at start (a bounded backfill).

The topic may change under a running dataflow:
- Partitions added while it runs are read from their earliest offset. Bytewax lists
  source partitions once, when the dataflow is built, so a live run lists spare ones
  named after the Kafka partitions to come ("2", "3", ...): a spare one looks for its
  partition every `partition_discovery_s` and starts reading once it exists. Each
  Bytewax partition is one Kafka partition by name, so its resume state is found
  again whatever the worker count. A topic that grows past the spares, loses
  partitions or is deleted stops the run with one line.
- Offsets deleted by retention before they were read stop the run with one line
  (`fail_on_data_loss`), or are counted, logged and written as one dead letter per
  gap while reading goes on from the earliest offset still there. librdkafka's
  `auto.offset.reset` is `error`, so nothing ever jumps to the latest offset.
- Next offsets are committed to a consumer group one epoch behind what was read,
  for Kafka's lag tools only: where a read starts is the recovery store's business.

A broker that goes away is waited for: librdkafka reconnects and the partition
continues from its own offset, so nothing is lost or read twice. Authentication
failures and other fatal errors stop the run with a clear message.

Values in a Schema Registry format travel with the decoders of their schema ids
(`sources.schemas`). A batch with a schema id not seen before waits while the registry
does not answer: the partition keeps its records, reports no progress and asks again
once a second (counted in `clickstream_schema_registry_retries`; `/health` turns 503
after the stall timeout), so a registry outage never makes a dead letter.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import accumulate
from typing import Any, NamedTuple

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from config import DEFAULTS
from events.parse import RECORDS_LOST
from events.schema import RawBatch, RawRecord
from events.streams import TimesOf
from kafka_client.admin import FATAL, NO_ANSWER, client_config, end_offsets
from kafka_client.schema_registry import RegistryRefused, RegistryUnavailable
from kafka_client.settings import KafkaSettings
from monitoring.metrics import InputMeter
from monitoring.progress_bar import READ_BAR
from operators.batches import END, NEVER, Origins
from process import stop
from sources.schemas import Decoding, WriterSchemas, writer_schemas
from sources.skew import FutureGuard

log = logging.getLogger(__name__)


# What the broker says of a topic that is not there (any more).
_GONE = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
# An offset commit the ACLs forbid: it will never land, so it is said once
_REFUSED = {KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED}
# No offset committed yet (real offsets are >= 0; librdkafka's logical ones are -1..-2).
_NOTHING = -1_000
# How long the last commit of a partition may take at the end of a bounded run.
_FINAL_COMMIT_WAIT_S = 15.0
# How often a partition whose batch waits for the Schema Registry asks it again.
_REGISTRY_RETRY_S = 1.0


def spare_parts(partitions: int) -> int:
    """How many Kafka partitions a dataflow can follow when the topic has `partitions`:
    twice as many, at least 16 more, and at least 64. The list must never be shorter than
    the one a recovery store was written with (Bytewax refuses a state it was not asked
    for with a panic); the floor keeps that so for a topic made again with fewer
    partitions, which then stops with one line instead."""
    return max(2 * partitions, partitions + 16, 64)


# librdkafka settings of ours that a user's own (KAFKA_CONFIG_FILE) override.
READ_DEFAULTS: dict[str, Any] = {
    # Once a partition's local queue holds queued.min.messages (100,000), librdkafka
    # waits this long before it fetches again: 1 s by default, during which a backlog
    # read at 100,000+ records/s per partition runs dry. 100 ms: a 956,000-record backfill
    # from 4 partitions took 1.70-1.78 s of wall time instead of 2.63-2.66, for the same
    # CPU (docs/performance.md). It changes nothing while the reader keeps up.
    "fetch.queue.backoff.ms": 100,
}


def reader_config(
    kafka: KafkaSettings, group: str, on_error: Callable[[KafkaError], None]
) -> dict[str, Any]:
    """The config of a partition's consumer: `READ_DEFAULTS`, then the user's settings, then
    what the source needs."""
    return client_config(
        kafka,
        READ_DEFAULTS,
        **{
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # an offset that is gone is an error here, never a silent jump
            "auto.offset.reset": "error",
            "error_cb": on_error,
        },
    )


class _TopicWatch:
    """How many partitions a topic has, asked at most once per `interval_s` for all the
    source partitions of a process. A topic that lost partitions or is gone stops the
    run with one line: its offsets no longer mean what the recovery store says."""

    def __init__(self, kafka: KafkaSettings, topic: str, count: int, interval_s: float) -> None:
        self.kafka = kafka
        self.topic = topic
        self.count = count
        # the Kafka partitions this run has source partitions for
        self.capacity = spare_parts(count)
        self.interval_s = interval_s
        self.next_check = time.monotonic() + interval_s
        self.lock = threading.Lock()
        self.admin: AdminClient | None = None
        self.admin_lock = threading.Lock()
        self.prober: concurrent.futures.ThreadPoolExecutor | None = None

    def partitions(self) -> int:
        if self.interval_s <= 0 or time.monotonic() < self.next_check:
            return self.count
        with self.lock:
            if time.monotonic() >= self.next_check:
                self._ask()
                self.next_check = time.monotonic() + self.interval_s
        return self.count

    def admin_client(self) -> AdminClient:
        """One admin client per topic and process (topic metadata, group offsets)."""
        with self.admin_lock:
            if self.admin is None:
                self.admin = AdminClient(client_config(self.kafka))
            return self.admin

    def probe(self, ask: Callable[[], tuple[int, int]]) -> concurrent.futures.Future:
        """`ask()` on this topic's probe thread, so that a worker never waits for a broker
        that may not answer."""
        with self.admin_lock:
            if self.prober is None:
                self.prober = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"kafka-probe-{self.topic}"
                )
            return self.prober.submit(ask)

    def _ask(self) -> None:
        try:
            md = self.admin_client().list_topics(self.topic, timeout=5).topics.get(self.topic)
        except KafkaException:
            return  # the broker is away: the partitions say so themselves
        if md is None or (md.error is not None and md.error.code() in _GONE):
            stop(f"Kafka topic {self.topic!r} was deleted while the dataflow read it")
        if md.error is not None or not md.partitions:
            return  # e.g. no leader yet: ask again next time
        count = len(md.partitions)
        if count < self.count:
            stop(
                f"Kafka topic {self.topic!r} has {count} partitions, fewer than the "
                f"{self.count} it had: it was deleted and made again, so the offsets read so "
                "far mean nothing there; start with a new recovery store and output"
            )
        if count > self.count:
            log.info(
                "kafka %s: %d partitions, was %d; reading the new ones from their earliest offset",
                self.topic,
                count,
                self.count,
            )
            if count > self.capacity:
                log.warning(
                    "kafka %s: %d partitions, more than the %d this run can follow; "
                    "partitions %d and up are read after a restart",
                    self.topic,
                    count,
                    self.capacity,
                    self.capacity,
                )
            self.count = count

    def followed(self) -> int:
        """How many partitions hold the watermark: those there are and that this run reads."""
        return min(self.partitions(), self.capacity)


class PartitionState(NamedTuple):
    """What a Kafka partition saves (as a plain tuple, see `operators.clock.ClockState`)."""

    offset: int  # the next offset to read
    high: int  # event-time progress: the largest record timestamp read
    # Whether it was ever idle (or found while running): then it may be behind the
    # stream's watermark. Stores from before this field existed save two fields: their
    # history is unknown, so they take the path that is exact either way.
    was_idle: bool = True


class _KafkaPartition(StatefulSourcePartition[RawBatch, tuple]):
    """Kafka partition `partition` of the topic. One that does not exist yet (a spare,
    see the module docstring) reads nothing until it does."""

    def __init__(
        self,
        source: KafkaSource,
        partition: int,
        resume: tuple | None,
    ) -> None:
        self.source = source
        self.topic = source.topic
        self.partition = partition
        self.part = f"{source.topic}#{partition}"
        self.watch = source.watch()
        self.batch_size = source.batch_size
        self.idle_timeout = source.idle_timeout_s
        self.future = FutureGuard(source.max_future_skew_s)
        self.meter = InputMeter(source.dataflow, self.part)
        self.group = source.kafka.group(source.dataflow)
        self.consumer: Consumer | None = None
        self.end: int | None = None
        self.offset, self.high, self.was_idle = OFFSET_BEGINNING, NEVER, False
        # sent last (`_NOTHING` again after a failure), and known to have landed
        self.committed = self.to_commit = self.landed = _NOTHING
        self.committing: concurrent.futures.Future | None = None
        self.lost: RawRecord | None = None
        self.out_of_range = False
        self.outage_since: float | None = None
        # after an outage, a question to the broker whether it answers (see `_broker_back`)
        self.probe: concurrent.futures.Future | None = None
        self.next_probe = 0.0
        # a commit timed out: none is sent again until records arrive (see `_commit`)
        self.commit_held = False
        self.fatal: str | None = None
        self.lag = 0
        self.next_lag = 0.0
        self.lag_lock = threading.Lock()
        self.last_read = time.monotonic()
        self.last_sent = 0.0
        self.sent_idle = False
        self.finished = False
        self.read = 0
        self.busy = False
        kafka = source.kafka
        self.schemas: WriterSchemas | None = (
            writer_schemas(kafka.registry)
            if kafka.registry is not None and source.value_format != "json"
            else None
        )
        # records read but waiting for the Schema Registry, and when to ask it again
        self.held: list[Message] = []
        self.registry_retry_at = 0.0
        self.registry_down_since: float | None = None
        if partition < self.watch.partitions():
            self._open(resume, new=False)
        elif resume is not None and resume[0] >= 0:
            stop(
                f"kafka {self.part}: the recovery store has an offset for this partition, "
                f"but topic {self.topic!r} has only {self.watch.partitions()} partitions now: "
                "it was deleted and made again; start with a new recovery store and output"
            )
        else:
            # a bounded run reads the partitions there are when it starts
            self.finished = source.kafka.stop_at_end

    def _open(self, resume: tuple | None, new: bool) -> None:
        # A partition found while running may be behind the stream's watermark: like one
        # that was idle, its events are judged against that watermark.
        state = PartitionState(*resume) if resume else PartitionState(OFFSET_BEGINNING, NEVER, new)
        self.offset, self.high, self.was_idle = state
        kafka = self.source.kafka
        self.consumer = Consumer(reader_config(kafka, self.group, self._on_error))
        tp = TopicPartition(self.topic, self.partition)
        low, high = end_offsets(self.consumer, tp)
        if self.offset >= 0:
            self._check_range(low, high)
        else:  # the earliest, as a number: what a gap found later is counted from
            self.offset = low
        if kafka.stop_at_end:
            self.end = high
            READ_BAR.expect(max(high - self.offset, 0), "records")
        self.consumer.assign([TopicPartition(self.topic, self.partition, self.offset)])
        self.meter.watch_lag(self.topic, self.partition, self._lag_now)
        log.info(
            "kafka %s: %sreading from offset %s%s",
            self.part,
            "new partition, " if new else "",
            self.offset,
            f" to end offset {self.end}" if self.end is not None else " (tailing)",
        )

    def _check_range(self, low: int, high: int) -> None:
        """The next offset against the partition's offsets now: records deleted before
        they were read are data loss, never skipped in silence."""
        if self.offset > high:
            stop(
                f"kafka {self.part}: the next offset to read is {self.offset}, past the end "
                f"offset {high}: the topic was deleted and made again; start with a new "
                "recovery store and output"
            )
        if self.offset >= low:
            return
        lost = low - self.offset
        gap = f"offsets {self.offset}..{low - 1} ({lost} records) deleted before they were read"
        if self.source.kafka.fail_on_data_loss:
            stop(
                f"kafka topic {self.topic!r} partition {self.partition}: data loss: the next "
                f"offset to read is {self.offset} but the earliest still there is {low}; "
                f"{lost} records were deleted (retention) before they were read; "
                f"CLICKSTREAM_FAIL_ON_DATA_LOSS=false reads on from {low}"
            )
        log.warning("kafka %s: data loss: %s; reading on from %d", self.part, gap, low)
        self.meter.lost(self.topic, self.partition, lost)
        self.lost = RawRecord(
            self.topic, self.partition, self.offset, None, None, None, f"{RECORDS_LOST}: {gap}"
        )
        self.offset = low

    def _at_end(self) -> bool:
        return self.end is not None and self.offset >= 0 and self.offset >= self.end

    def next_batch(self) -> list[RawBatch]:
        if self.finished:
            raise StopIteration
        if self.consumer is None:
            if self.partition >= self.watch.partitions():
                return []
            self._open(None, new=True)
        assert self.consumer is not None
        if self.lost is not None:
            return [self._lost_batch()]
        if self._at_end():
            self.finished = True
            self.meter.finished()
            READ_BAR.advance(0, last=True)
            log.info(
                "kafka %s: end offset %s reached after %d records", self.part, self.end, self.read
            )
            return [RawBatch(self.part, self._parts(), progress=END, was_idle=self.was_idle)]
        if self.held:
            return self._held_batch()
        messages = self.consumer.consume(self.batch_size, timeout=0)
        errors = list(map(Message.error, messages))
        # `is`, not `==`: KafkaError == None leaves a TypeError pending in confluent-kafka
        if any(err is not None for err in errors):
            for err in errors:
                if err is not None:
                    self._on_error(err)
            messages = [msg for msg, err in zip(messages, errors, strict=True) if err is None]
        if self.fatal is not None:
            stop(self.fatal)
        if self.out_of_range and not messages:
            self._reopen()
            return [self._lost_batch()] if self.lost is not None else []
        return self._send(messages)

    def _send(self, messages: list[Message]) -> list[RawBatch]:
        if self.source.slow_reads_s:
            time.sleep(self.source.slow_reads_s * len(messages))
        now = time.monotonic()
        decoders: dict[int, Decoding] = {}
        if messages and self.schemas is not None:
            found = self._decoders(messages)
            if found is None:  # the registry is away: the records wait (_held_batch)
                self.held = messages
                self.busy = False
                self.meter.polled(0, waiting=True)
                return self._progress(now, idle=False)
            decoders = found
        self.busy = bool(messages)
        if now >= self.next_lag:
            self._measure_lag(now)
        self.meter.polled(len(messages), waiting=self.lag > 0)
        if messages:
            self.meter.read(self.topic, self.partition, len(messages))
            if self.end is not None:
                READ_BAR.advance(len(messages))
            if self.outage_since is not None:
                if now - self.outage_since > 1.0:
                    log.warning(
                        "kafka %s: reading again after %.0f s", self.part, now - self.outage_since
                    )
                self.outage_since = None
            self.commit_held = False  # the broker answers again
            self.last_read = self.last_sent = now
            self.sent_idle = False
            return [self._batch(messages, decoders)]
        idle = now - self.last_read >= self.idle_timeout and self._caught_up()
        return self._progress(now, idle)

    def _progress(self, now: float, idle: bool) -> list[RawBatch]:
        """Event-time progress without records, at most once a second (and at once when
        the partition turns idle)."""
        # An idle partition stops holding the others back but does not move event time
        # on by the wall clock: records written meanwhile (a stalled producer's backlog)
        # then belong where their time says, whatever the stall, as in Spark.
        progress = self.high
        if now - self.last_sent >= 1.0 or (idle and not self.sent_idle) or self.last_sent == 0.0:
            self.last_sent = now
            self.sent_idle = idle
            self.was_idle = self.was_idle or idle
            return [
                RawBatch(
                    self.part, self._parts(), progress=progress, idle=idle, was_idle=self.was_idle
                )
            ]
        return []

    def _decoders(self, messages: list[Message]) -> dict[int, Decoding] | None:
        """The decoders of the batch's schema ids, or None while the registry is away."""
        assert self.schemas is not None
        try:
            found = self.schemas.for_values(list(map(Message.value, messages)))
        except RegistryRefused as ex:
            stop(f"kafka {self.part}: the Schema Registry refused the credentials ({ex})")
        except RegistryUnavailable as ex:
            now = time.monotonic()
            self.registry_retry_at = now + _REGISTRY_RETRY_S
            self.meter.registry_retry()
            if self.registry_down_since is None:
                self.registry_down_since = now
                log.warning(
                    "kafka %s: the Schema Registry does not answer (%s); holding %d records "
                    "and asking again every %.0f s",
                    self.part,
                    ex,
                    len(messages),
                    _REGISTRY_RETRY_S,
                )
            return None
        if self.registry_down_since is not None:
            log.warning(
                "kafka %s: the Schema Registry answers again after %.0f s",
                self.part,
                time.monotonic() - self.registry_down_since,
            )
            self.registry_down_since = None
        return found

    def _held_batch(self) -> list[RawBatch]:
        """The records that wait for the registry, once it answers; nothing else is read
        meanwhile, so the partition's order and offsets stay as they were."""
        now = time.monotonic()
        if now < self.registry_retry_at:
            # waiting with input at hand: a stall, as far as /health is concerned
            self.meter.polled(0, waiting=True)
            return self._progress(now, idle=False)
        messages, self.held = self.held, []
        return self._send(messages)

    def _parts(self) -> int:
        """How many Kafka partitions hold the watermark."""
        return self.watch.followed()

    def _reopen(self) -> None:
        """The next offset went out of range while running (retention overtook us)."""
        assert self.consumer is not None
        self.out_of_range = False
        tp = TopicPartition(self.topic, self.partition)
        self._check_range(*end_offsets(self.consumer, tp))
        self.consumer.assign([TopicPartition(self.topic, self.partition, self.offset)])

    def _lost_batch(self) -> RawBatch:
        """The gap as one dead letter, standing at the progress so far (it moves no time)."""
        assert self.lost is not None
        record, self.lost = self.lost, None
        return RawBatch(
            self.part,
            self._parts(),
            [None],
            [self.high],
            [self.high],
            self.high,
            origins=Origins(self.topic, self.partition, [record.offset]),
            was_idle=self.was_idle,
            keys=[None],
            special={0: record},
        )

    def _batch(self, messages: list[Message], decoders: dict[int, Decoding]) -> RawBatch:
        """Records in columns; one pass per column keeps the per-record cost in C."""
        n = len(messages)
        offsets: list[int] = list(map(Message.offset, messages))  # type: ignore[arg-type]
        keys = list(map(Message.key, messages))
        values = list(map(Message.value, messages))
        stamps = list(map(Message.timestamp, messages))
        no_time: dict[int, str] = {}
        if self.source.times_of is None:
            times = [ts for _, ts in stamps]
        else:  # the event time is a column of the payload
            times, no_time = self.source.times_of(values)
            stamps = [(TIMESTAMP_CREATE_TIME, ts) for ts in times]
        special: dict[int, RawRecord] = {}
        limit = self.future.limit_ms()
        # librdkafka gives -1 for TIMESTAMP_NOT_AVAILABLE
        if no_time or min(times) < 0 or max(times) > limit:
            # No event time, or one from a broken clock: a dead letter, standing at the
            # partition's progress so far, so it moves no event time.
            high = self.high
            for i, (kind, ts) in enumerate(stamps):
                if i in no_time:
                    special[i] = RawRecord(
                        self.topic,
                        self.partition,
                        offsets[i],
                        messages[i].timestamp()[1],
                        keys[i],
                        values[i],
                        no_time[i],
                    )
                    times[i] = high
                elif kind == TIMESTAMP_NOT_AVAILABLE or ts < 0:
                    special[i] = RawRecord(
                        self.topic, self.partition, offsets[i], None, keys[i], values[i]
                    )
                    times[i] = high
                elif ts > limit:
                    special[i] = RawRecord(
                        self.topic,
                        self.partition,
                        offsets[i],
                        ts,
                        keys[i],
                        values[i],
                        self.future.reason(ts),
                    )
                    times[i] = high
                elif ts > high:
                    high = ts
        marks = list(accumulate(times, max, initial=self.high))[1:]
        self.high = marks[-1]
        self.offset = offsets[-1] + 1
        self.read += n
        return RawBatch(
            self.part,
            self._parts(),
            values,
            times,
            marks,
            self.high,
            origins=Origins(self.topic, self.partition, offsets),
            was_idle=self.was_idle,
            keys=keys,
            special=special,
            decoders=decoders,
        )

    def _measure_lag(self, now: float) -> None:
        """The lag (for `/health`), at most once a second."""
        self.next_lag = now + 1.0
        assert self.consumer is not None
        lag = self._client_lag(self.consumer)
        if lag is not None:
            self.lag = lag

    def _client_lag(self, consumer: Consumer) -> int | None:
        """End offset minus the next offset to read, from the client's cached figures
        (refreshed by its fetches); None while it has none."""
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, self.partition), cached=True
            )
        except (KafkaException, RuntimeError):  # RuntimeError: the client is closed
            return None
        if high < 0:
            return None
        return max(high - (self.offset if self.offset >= 0 else low), 0)

    def _lag_now(self) -> float:
        """The lag when Prometheus asks: the client's fetcher thread keeps its end offset
        fresh even while this partition's worker is stuck, so a stall shows as lag, not
        as the last figure before it."""
        with self.lag_lock:  # `close` waits: the client is not freed under this call
            if self.finished:
                return 0
            lag = None if self.consumer is None else self._client_lag(self.consumer)
        return self.lag if lag is None else lag

    def _caught_up(self) -> bool:
        """Read up to the end offset the broker last reported, and the broker is there.

        Only such a partition may turn idle: one that is cut off from its broker may
        have records waiting, and letting the watermark run ahead of them would make
        them late.
        """
        if self.consumer is None:
            return False
        if self.outage_since is not None and not self._broker_back():
            return False
        tp = TopicPartition(self.topic, self.partition)
        try:
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            return False
        if high < 0:
            return False
        return (self.offset if self.offset >= 0 else low) >= high

    def _broker_back(self) -> bool:
        """After an outage, whether the broker answers again with nothing new to read.

        A partition learns that its broker is back from the records it reads. A quiet one
        (a users topic nobody writes to) reads none: without asking, it would never turn
        idle again, and a join would hold every click back for good (found by `just
        chaos`). Asked on the topic's probe thread, at most once a second, so the worker
        never waits; the broker's end offset, not the client's cached one, says whether
        records written meanwhile are still to come (they then end the outage)."""
        probe = self.probe
        if probe is None:
            now = time.monotonic()
            if now >= self.next_probe:
                self.next_probe = now + 1.0
                self.probe = self.watch.probe(self._offsets)
            return False
        if not probe.done():
            return False
        self.probe = None
        try:
            low, high = probe.result()
        except (KafkaException, RuntimeError):  # still away, or the client closed
            return False
        if (self.offset if self.offset >= 0 else low) < high:
            return False
        assert self.outage_since is not None
        log.warning(
            "kafka %s: the broker answers again after %.0f s; nothing new to read",
            self.part,
            time.monotonic() - self.outage_since,
        )
        self.outage_since = None
        return True

    def _offsets(self) -> tuple[int, int]:
        """The partition's low and high offsets, asked of the broker (on the probe thread)."""
        with self.lag_lock:  # `close` waits: the client is not freed under this call
            if self.consumer is None:
                raise RuntimeError("closed")
            return end_offsets(self.consumer, TopicPartition(self.topic, self.partition), 5.0)

    def _on_error(self, err: KafkaError) -> None:
        """Errors of records and of the client (`error_cb`, served by `consume`)."""
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.code() == KafkaError._AUTO_OFFSET_RESET:
            self.out_of_range = True  # retention deleted the next offset: see _reopen
            return
        if err.code() in _GONE:
            # it existed when the dataflow was built (check_topics)
            self.fatal = f"Kafka topic {self.topic!r} was deleted while the dataflow read it"
            return
        if err.fatal() or err.code() in FATAL:
            self.fatal = f"kafka {self.part}: {err.str()}"
            return
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            log.warning("kafka %s: %s; waiting for the broker", self.part, err.str())

    def next_awake(self) -> datetime | None:
        # Poll again at once while there is data; soon while records are coming (the
        # first fetch, a fetch between two batches); otherwise a little later. A spare
        # asks the (cached) partition count once a second.
        if self.finished or self.busy:
            return None
        if self.consumer is None:
            return datetime.now(UTC) + timedelta(seconds=1)
        if self.held:
            wait_s = max(self.registry_retry_at - time.monotonic(), 0.0)
            return datetime.now(UTC) + timedelta(seconds=wait_s)
        quiet_s = time.monotonic() - self.last_read
        return datetime.now(UTC) + timedelta(milliseconds=2 if quiet_s < 1.0 else 50)

    def snapshot(self) -> tuple:
        # Bytewax snapshots once every output has finished the epoch before, so the
        # offset of the previous snapshot is what the group may show as read.
        self._commit(self.to_commit)
        self.to_commit = self.offset
        if self.consumer is None:
            # A spare that opens on resume will be behind the stream, as after idling.
            return tuple(PartitionState(OFFSET_BEGINNING, NEVER, True))
        return tuple(PartitionState(self.offset, self.high, self.was_idle))

    def close(self) -> None:
        if self.consumer is not None:
            self._final_commit(wait_s=_FINAL_COMMIT_WAIT_S)
            with self.lag_lock:
                self.consumer.close()
                self.consumer = None

    def _final_commit(self, wait_s: float) -> None:
        """The last offset of a bounded run to the group: the run ends here, so nothing
        commits after it. Retried within `wait_s` while the broker answers with a
        retriable error: on a broker that never saw a group, the first group request
        creates `__consumer_offsets`, and its coordinator is not up at once."""
        deadline = time.monotonic() + wait_s
        sent = 0
        while self.landed != self.offset and self.offset >= 0:
            left = deadline - time.monotonic()
            stopped = self.outage_since is not None or self.commit_held
            if left <= 0 or stopped or self.source.commit_refused:
                log.info("kafka %s: offset %d not committed", self.part, self.offset)
                return
            if self.committing is not None and not self.committing.done():
                concurrent.futures.wait([self.committing], timeout=left)
            elif self.committed == self.offset:
                time.sleep(min(0.05, left))  # its answer is on the way to `_on_commit`
            else:
                if sent:
                    time.sleep(min(0.2, left))  # it failed: a moment before the next try
                sent += 1
                self._commit(self.offset, wait_s=max(0.0, deadline - time.monotonic()))

    def _commit(self, offset: int, wait_s: float = 0.0) -> None:
        """The next offset to the consumer group, for Kafka's lag tools (never read back).

        Through the admin API, not the consumer: our consumers never join the group, so
        a group we may not use costs no coordinator wait. One request at a time, so an
        older offset never lands after a newer one.

        Not while the broker is unreachable: librdkafka aborts the whole process
        (`rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt > 0'`) when a
        connection drops under a coordinator-bound admin request (confluentinc/librdkafka
        #4605, fix proposed in #5397). An outage is not always known at once (`just chaos`
        saw commits time out one after another until one aborted): after a commit timed
        out, none is sent until records arrive again. The next snapshot commits."""
        if self.consumer is None or offset < 0 or offset == self.committed:
            return
        if self.outage_since is not None or self.commit_held:
            return
        if self.committing is not None and not self.committing.done():
            if wait_s <= 0:
                return  # the next snapshot commits a newer one
            concurrent.futures.wait([self.committing], timeout=wait_s)
        self.committed = offset
        request = ConsumerGroupTopicPartitions(
            self.group, [TopicPartition(self.topic, self.partition, offset)]
        )
        admin = self.watch.admin_client()
        future = admin.alter_consumer_group_offsets([request], request_timeout=10)[self.group]
        future.add_done_callback(partial(self._on_commit, offset))
        self.committing = future
        if wait_s > 0:
            concurrent.futures.wait([future], timeout=wait_s)

    def _on_commit(self, offset: int, future: concurrent.futures.Future) -> None:
        """The broker's answer to a commit of `offset`. A refusal is one warning per topic
        and process; any other failure lets the next commit send the offset again.

        The answer may be a success of the request with an error for the partition (a
        coordinator not ready yet answers NOT_COORDINATOR that way)."""
        err = future.exception()
        if err is None:
            errors = [tp.error for tp in future.result().topic_partitions if tp.error]
            if not errors:
                self.landed = offset
                return
            err = KafkaException(errors[0])
        if self.committed == offset:
            self.committed = _NOTHING  # not landed: the next commit sends it again
        code = err.args[0].code() if isinstance(err, KafkaException) else None
        if code not in _REFUSED:  # a timeout or a coordinator not ready: the next may land
            self.commit_held = code in NO_ANSWER  # the broker may be away
            log.info("kafka %s: an offset commit to %r failed (%s)", self.part, self.group, err)
            return
        if self.source.commit_refused:
            return
        self.source.commit_refused = True
        log.warning(
            "kafka %s: cannot commit offsets to consumer group %r (%s); reading goes on, but "
            "Kafka's lag tools will not show this dataflow: grant READ on the group",
            self.part,
            self.group,
            err.args[0].name() if isinstance(err, KafkaException) else err,
        )


class KafkaSource(FixedPartitionedSource[RawBatch, tuple]):
    """Every partition of `topic`, from the earliest offset, with event-time progress;
    `partitions` is how many it has now. Partitions added later are read too."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        partitions: int,
        batch_size: int = DEFAULTS.batch_size,
        idle_timeout_s: float = DEFAULTS.idle_timeout_s,
        max_future_skew_s: float = DEFAULTS.max_future_skew_s,
        dataflow: str = "",
        value_format: str | None = None,
        times_of: TimesOf | None = None,
        slow_reads_s: float = 0.0,
    ) -> None:
        self.kafka = kafka
        self.dataflow = dataflow
        self.slow_reads_s = slow_reads_s  # config.slow_reads_for_tests
        # the stream's format (None: `KAFKA_VALUE_FORMAT`), and its payload's event time
        self.value_format = value_format or kafka.value_format
        self.times_of = times_of
        self.max_future_skew_s = max_future_skew_s
        self.topic = topic
        self.partitions = partitions
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s
        self._watch: _TopicWatch | None = None
        self._lock = threading.Lock()
        # A refused offset commit is logged once per topic and process.
        self.commit_refused = False

    def watch(self) -> _TopicWatch:
        """The partition count, shared by this process's partitions of the topic."""
        with self._lock:
            if self._watch is None:
                self._watch = _TopicWatch(
                    self.kafka,
                    self.topic,
                    self.partitions,
                    0.0 if self.kafka.stop_at_end else self.kafka.partition_discovery_s,
                )
            return self._watch

    def list_parts(self) -> list[str]:
        # The partitions there are and spares for those to come (the module docstring).
        return [str(p) for p in range(self.watch().capacity)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple | None
    ) -> _KafkaPartition:
        return _KafkaPartition(self, int(for_part), resume_state)
