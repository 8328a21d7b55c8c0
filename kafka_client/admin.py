"""Asking Kafka: librdkafka settings for any client (its logs in Python logging, repeats
cut), a partition's end offsets, and the checks a dataflow makes before it reads: the
topics exist, and we may read (and, for an output topic, write) them.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AclOperation, AdminClient

from kafka_client.settings import KafkaSettings
from setting import ConfigError, Unreachable

__all__ = ["FATAL", "check_topics", "client_config", "end_offsets", "visible_partitions"]


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
FATAL = {
    KafkaError._AUTHENTICATION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._SSL,
    KafkaError._INVALID_ARG,
}


def client_config(
    kafka: KafkaSettings, defaults: Mapping[str, Any] | None = None, /, **extra: Any
) -> dict[str, Any]:
    """librdkafka settings for any client: `defaults` (ours, which a line of the user's
    `KAFKA_CONFIG_FILE` overrides), the user's settings, then `extra` (what the client
    needs, whatever the file says). Its logs go to Python logging."""
    return {**(defaults or {}), **kafka.librdkafka_config(), "logger": librdkafka_log, **extra}


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


def visible_partitions(client: Any, topic: str, timeout_s: float = 10.0) -> int | None:
    """How many partitions `topic` has, once the metadata of `client` (a producer, a
    consumer or an admin client) shows it: a topic created a moment ago may take a
    little while to show. None when it does not within `timeout_s`.

    ```python
    partitions = visible_partitions(producer, "USER_CLICKSTREAM")
    ```
    """
    deadline = time.monotonic() + timeout_s
    while True:
        md = client.list_topics(topic, timeout=30).topics[topic]
        if md.partitions and md.error is None:
            return len(md.partitions)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


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
            if time.monotonic() >= deadline or _all_refuse(where):
                # nothing listens at any bootstrap address: no need to wait out the timeout
                raise Unreachable(f"cannot reach Kafka at {where}: {ex.args[0].str()}") from None
    counts = {}
    for topic in topics:
        md = metadata.topics.get(topic)
        if md is None:
            # a topic we may not describe is left out of the full listing: ask for it
            # by name, so the broker says whether it is missing or forbidden
            try:
                md = admin.list_topics(topic, timeout=10).topics.get(topic)
            except KafkaException as ex:
                raise _answer_error(ex, f"Kafka topic {topic!r} at {where}") from None
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


# No answer in time: the broker may be away (also what holds a source's commits back).
NO_ANSWER = frozenset(
    {
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)
# Answers of a broker that is restarting or away: the start may work a moment later.
_TRANSIENT = NO_ANSWER | {
    KafkaError.NOT_CONTROLLER,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.BROKER_NOT_AVAILABLE,
}


def _answer_error(ex: KafkaException, what: str) -> ConfigError:
    """A failed check as the error to stop with: `Unreachable` (exit 75, started again)
    when the broker did not answer in time, as during its restart (a chaos run caught a
    start refused for good that way); `ConfigError` (exit 2) when it said no."""
    err = ex.args[0]
    transient = isinstance(err, KafkaError) and (err.retriable() or err.code() in _TRANSIENT)
    reason = err.str() if isinstance(err, KafkaError) else str(err)
    return (Unreachable if transient else ConfigError)(f"{what}: {reason}")


def _all_refuse(bootstrap: str) -> bool:
    """Whether every `host:port` of a bootstrap list refuses a TCP connection (a broker
    that is down); an address that answers, or does not answer at all, is not refusing."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        except ConnectionRefusedError:
            continue
        except (OSError, ValueError):
            return False
        return False
    return True


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
            raise _answer_error(ex, f"Kafka topic {topic!r} at {where}") from None
        # None: the broker runs without an authorizer, everything is allowed
        if ops is not None and not {AclOperation.WRITE, AclOperation.ALL} & set(ops):
            raise ConfigError(
                f"Kafka topic {topic!r} at {where}: not authorized to write "
                "(TOPIC_AUTHORIZATION_FAILED); grant this principal WRITE on it"
            )
