"""Read a Kafka topic from the earliest offset, one Bytewax partition per Kafka partition.

Like Bytewax's `KafkaSource`, it assigns partitions (no consumer group) and keeps
the next offset of each partition as its recovery state, so a resumed run continues
exactly after the last committed batch. Unlike it, each partition reports its
event-time progress (the Kafka record timestamps) for the watermark, turns idle
after `idle_timeout_s` without records so a quiet partition stops holding the
others back, and can stop at the end offsets seen at start (a bounded backfill).

A broker that goes away is waited for: librdkafka reconnects and the partition
continues from its own offset, so nothing is lost or read twice. Authentication
failures and other fatal errors stop the run with a clear message.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AclOperation, AdminClient

from config import ConfigError, KafkaSettings
from events.schema import RawBatch, RawRecord
from monitoring.metrics import InputMeter
from monitoring.progress import PROGRESS
from operators.batches import END, NEVER, Origins
from sources.skew import FutureGuard

log = logging.getLogger(__name__)


class _Repeats(logging.Filter):
    """librdkafka repeats a connection failure every few ms; let one through per 30 s."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        shape = re.sub(r"\d+", "#", record.getMessage().split("]: ", 1)[-1])
        now = time.monotonic()
        if now - self.seen.get(shape, -1e9) < 30.0:
            return False
        if len(self.seen) > 1000:
            self.seen.clear()
        self.seen[shape] = now
        return True


librdkafka_log = logging.getLogger("librdkafka")
librdkafka_log.addFilter(_Repeats())

# Errors that will not go away by waiting.
_FATAL = {
    KafkaError._AUTHENTICATION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._SSL,
    KafkaError._INVALID_ARG,
}


class KafkaSourceError(RuntimeError):
    """A Kafka error that retrying will not fix (bad credentials, missing topic)."""


def client_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for any client; its logs go to Python logging."""
    return {**kafka.librdkafka_config(), "logger": librdkafka_log, **extra}


# Answers of a partition whose leader is not ready yet, as just after the topic was
# created: they go away by asking again.
_NOT_READY = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
}


def end_offsets(consumer: Consumer, tp: TopicPartition, timeout_s: float = 30.0) -> tuple[int, int]:
    """The low and high offsets of a partition, asked again while its leader is not ready.

    ```python
    low, high = end_offsets(consumer, TopicPartition("clickstream", 0))
    ```
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            return int(low), int(high)
        except KafkaException as ex:
            if ex.args[0].code() not in _NOT_READY or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_REFUSALS = ("authentication", "ssl handshake", "certificate verify", "sasl")


def check_topics(
    kafka: KafkaSettings,
    topics: list[str],
    timeout_s: float = 20.0,
    writes: list[str] | None = None,
) -> dict[str, int]:
    """Partition count per topic; a `ConfigError` that says what is wrong otherwise: a
    topic that does not exist or that we may not read, or one of `writes` that we may
    not write to.

    Runs when a dataflow is built, so bad credentials or a wrong address stop
    `python -m bytewax.run` with one clear line instead of retrying forever.
    """
    where = kafka.bootstrap_servers
    collected = _Collect()
    quiet = logging.getLogger("librdkafka.check")
    quiet.propagate = False
    quiet.handlers = [collected]
    try:
        # Building a consumer checks every librdkafka setting, including a config file's.
        Consumer(client_config(kafka, logger=quiet, **{"group.id": "check"})).close()
        admin = AdminClient(client_config(kafka, logger=quiet))
    except KafkaException as ex:
        raise ConfigError(f"invalid Kafka settings: {ex.args[0].str()}") from None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = admin.list_topics(timeout=2)
            break
        except KafkaException as ex:
            admin.poll(0.2)  # serve the log callbacks that say why
            refused = [m for m in collected.messages if any(r in m.lower() for r in _REFUSALS)]
            if refused:
                reason = refused[-1].split(": ", 2)[-1]
                raise ConfigError(f"Kafka at {where} refused the connection: {reason}") from None
            if time.monotonic() >= deadline:
                raise ConfigError(f"cannot reach Kafka at {where}: {ex.args[0].str()}") from None
    counts = {}
    for topic in topics:
        md = metadata.topics.get(topic)
        if md is None:
            # a topic we may not describe is left out of the full listing: ask for it
            # by name, so the broker says whether it is missing or forbidden
            md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is not None and md.error.code() in _DENIED:
            raise ConfigError(
                f"Kafka topic {topic!r} at {where}: not authorized "
                f"({md.error.name()}); grant this principal READ and DESCRIBE on it"
            )
        if md is None or md.error is not None or not md.partitions:
            raise ConfigError(f"Kafka topic {topic!r} does not exist at {where}")
        counts[topic] = len(md.partitions)
    if writes:
        _check_writable(admin, writes, where)
    return counts


_DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}


def _check_writable(admin: AdminClient, topics: list[str], where: str) -> None:
    """The broker's answer to: may we write to `topics`? (Nothing is written to ask.)"""
    futures = admin.describe_topics(
        TopicCollection(topics), request_timeout=20, include_authorized_operations=True
    )
    for topic, future in futures.items():
        try:
            ops = future.result().authorized_operations
        except KafkaException as ex:
            raise ConfigError(f"Kafka topic {topic!r} at {where}: {ex.args[0].str()}") from None
        # None: the broker runs without an authorizer, everything is allowed
        if ops is not None and not {AclOperation.WRITE, AclOperation.ALL} & set(ops):
            raise ConfigError(
                f"Kafka topic {topic!r} at {where}: not authorized to write "
                "(TOPIC_AUTHORIZATION_FAILED); grant this principal WRITE on it"
            )


class _KafkaPartition(StatefulSourcePartition[RawBatch, tuple]):
    def __init__(
        self,
        source: KafkaSource,
        partition: int,
        resume: tuple | None,
    ) -> None:
        self.topic = source.topic
        self.partition = partition
        self.part = f"{source.topic}#{partition}"
        self.parts = source.partitions
        self.batch_size = source.batch_size
        self.idle_timeout = source.idle_timeout_s
        self.future = FutureGuard(source.max_future_skew_s)
        # next offset, event-time progress, whether it has ever been idle
        if resume is not None and len(resume) == 2:
            # A store from before `was_idle` existed: its history is unknown, so take the
            # path that is exact either way.
            resume = (*resume, True)
        self.offset, self.high, self.was_idle = resume or (OFFSET_BEGINNING, NEVER, False)
        self.outage_since: float | None = None
        self.fatal: str | None = None
        self.consumer = Consumer(
            client_config(
                source.kafka,
                **{
                    # librdkafka wants a group id even though we only assign partitions
                    "group.id": "clickstream-bytewax",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "error_cb": self._on_error,
                },
            )
        )
        tp = TopicPartition(self.topic, partition, self.offset)
        self.end: int | None = None
        if source.kafka.stop_at_end:
            low, high = end_offsets(self.consumer, tp)
            self.end = high
            if self.offset == OFFSET_BEGINNING:
                self.offset = low
        self.consumer.assign([tp])
        self.meter = InputMeter(source.dataflow, self.part)
        self.lag = 0
        self.next_lag = 0.0
        if self.end is not None:
            PROGRESS.expect(max(self.end - max(self.offset, 0), 0), "records")
        log.info(
            "kafka %s: reading from offset %s%s",
            self.part,
            "earliest" if self.offset < 0 else self.offset,
            f" to end offset {self.end}" if self.end is not None else " (tailing)",
        )
        self.last_read = time.monotonic()
        self.last_sent = 0.0
        self.sent_idle = False
        self.finished = False
        self.read = 0
        self.busy = False

    def _at_end(self) -> bool:
        return self.end is not None and self.offset >= 0 and self.offset >= self.end

    def next_batch(self) -> list[RawBatch]:
        if self.finished:
            raise StopIteration
        if self._at_end():
            self.finished = True
            self.meter.lag(self.topic, self.partition, 0)
            self.meter.finished()
            PROGRESS.advance(0, last=True)
            log.info(
                "kafka %s: end offset %s reached after %d records", self.part, self.end, self.read
            )
            return [RawBatch(self.part, self.parts, progress=END, was_idle=self.was_idle)]
        messages = self.consumer.consume(self.batch_size, timeout=0)
        errors = list(map(Message.error, messages))
        if errors.count(None) != len(errors):
            for err in errors:
                if err is not None:
                    self._on_error(err)
            messages = [msg for msg, err in zip(messages, errors, strict=True) if err is None]
        if self.fatal is not None:
            raise KafkaSourceError(self.fatal)
        now = time.monotonic()
        self.busy = bool(messages)
        if now >= self.next_lag:
            self._measure_lag(now)
        self.meter.polled(len(messages), waiting=self.lag > 0)
        if messages:
            self.meter.read(self.topic, self.partition, len(messages))
            if self.end is not None:
                PROGRESS.advance(len(messages))
            if self.outage_since is not None:
                if now - self.outage_since > 1.0:
                    log.warning(
                        "kafka %s: reading again after %.0f s", self.part, now - self.outage_since
                    )
                self.outage_since = None
            self.last_read = self.last_sent = now
            self.sent_idle = False
            return [self._batch(messages)]
        idle = now - self.last_read >= self.idle_timeout and self._caught_up()
        if idle:
            # A quiet partition: event time moves on with the wall clock.
            progress = (
                self.high + int((now - self.last_read) * 1000) if self.high > NEVER else NEVER
            )
        else:
            progress = self.high
        if now - self.last_sent >= 1.0 or (idle and not self.sent_idle) or self.last_sent == 0.0:
            self.last_sent = now
            self.sent_idle = idle
            self.was_idle = self.was_idle or idle
            return [
                RawBatch(
                    self.part, self.parts, progress=progress, idle=idle, was_idle=self.was_idle
                )
            ]
        return []

    def _batch(self, messages: list[Message]) -> RawBatch:
        """Records in columns; one pass per column keeps the per-record cost in C."""
        n = len(messages)
        offsets: list[int] = list(map(Message.offset, messages))  # type: ignore[arg-type]
        keys = list(map(Message.key, messages))
        values = list(map(Message.value, messages))
        stamps = list(map(Message.timestamp, messages))
        times = [ts for _, ts in stamps]
        special: dict[int, RawRecord] = {}
        limit = self.future.limit_ms()
        # librdkafka gives -1 for TIMESTAMP_NOT_AVAILABLE
        if min(times) < 0 or max(times) > limit:
            # No event time, or one from a broken clock: a dead letter, standing at the
            # partition's progress so far, so it moves no event time.
            high = self.high
            for i, (kind, ts) in enumerate(stamps):
                if kind == TIMESTAMP_NOT_AVAILABLE or ts < 0:
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
            self.parts,
            values,
            times,
            marks,
            self.high,
            origins=Origins(self.topic, self.partition, offsets),
            was_idle=self.was_idle,
            keys=keys,
            special=special,
        )

    def _measure_lag(self, now: float) -> None:
        """End offset minus the next offset to read, from the client's cached figures
        (refreshed by its fetches), at most once a second."""
        self.next_lag = now + 1.0
        try:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, self.partition), cached=True
            )
        except KafkaException:
            return
        if high >= 0:
            self.lag = max(high - (self.offset if self.offset >= 0 else low), 0)
            self.meter.lag(self.topic, self.partition, self.lag)

    def _caught_up(self) -> bool:
        """Read up to the end offset the broker last reported, and the broker is there.

        Only such a partition may turn idle: one that is cut off from its broker may
        have records waiting, and letting the watermark run ahead of them would make
        them late.
        """
        if self.outage_since is not None:
            return False
        tp = TopicPartition(self.topic, self.partition)
        try:
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            return False
        if high < 0:
            return False
        return (self.offset if self.offset >= 0 else low) >= high

    def _on_error(self, err: KafkaError) -> None:
        """Errors of records and of the client (`error_cb`, served by `consume`)."""
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal() or err.code() in _FATAL:
            self.fatal = f"kafka {self.part}: {err.str()}"
            return
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            log.warning("kafka %s: %s; waiting for the broker", self.part, err.str())

    def next_awake(self) -> datetime | None:
        # Poll again at once while there is data; soon while records are coming (the
        # first fetch, a fetch between two batches); otherwise a little later.
        if self.finished or self.busy:
            return None
        quiet_s = time.monotonic() - self.last_read
        return datetime.now(UTC) + timedelta(milliseconds=2 if quiet_s < 1.0 else 50)

    def snapshot(self) -> tuple:
        return self.offset, self.high, self.was_idle

    def close(self) -> None:
        self.consumer.close()


class KafkaSource(FixedPartitionedSource[RawBatch, tuple]):
    """Every partition of `topic`, from the earliest offset, with event-time progress."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        partitions: int,
        batch_size: int = 2_000,
        idle_timeout_s: float = 10.0,
        max_future_skew_s: float = 3600.0,
        dataflow: str = "",
    ) -> None:
        self.kafka = kafka
        self.dataflow = dataflow
        self.max_future_skew_s = max_future_skew_s
        self.topic = topic
        self.partitions = partitions
        self.batch_size = batch_size
        self.idle_timeout_s = idle_timeout_s

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple | None
    ) -> _KafkaPartition:
        return _KafkaPartition(self, int(for_part), resume_state)
