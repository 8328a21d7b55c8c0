"""`kafka_client.group_offsets`: offsets reach the consumer group from a helper process,
and a helper that librdkafka aborts (`just chaos` caught librdkafka#4605 doing so to whole
dataflow processes) fails only the commits in flight; the next commit starts a new one."""

from __future__ import annotations

import os
import signal
import time

import pytest
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from kafka_client.group_offsets import OffsetCommitter
from kafka_client.settings import KafkaSettings
from tools.produce import create_topics

RETRY = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
         KafkaError.COORDINATOR_NOT_AVAILABLE}  # fmt: skip


def _committed(kafka: KafkaSettings, group: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]
    (answer,) = admin.list_consumer_group_offsets(request).values()
    return answer.result().topic_partitions[0].offset


def _lands(committer: OffsetCommitter, group: str, topic: str, offset: int) -> None:
    """Commit until the broker takes it: a broker that never saw a group answers
    NOT_COORDINATOR at first, while it makes `__consumer_offsets`."""
    deadline = time.monotonic() + 60
    while True:
        try:
            committer.commit(group, topic, 0, offset).result(timeout=60)
            return
        except KafkaException as ex:
            assert ex.args[0].retriable() or ex.args[0].code() in RETRY, ex
            assert time.monotonic() < deadline, ex
            time.sleep(0.2)


def test_a_commit_lands_and_an_aborted_helper_is_replaced(kafka_bootstrap, topic_name):
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 1)
    group = f"g-{topic_name}"
    committer = OffsetCommitter(kafka)
    try:
        _lands(committer, group, topic_name, 5)
        assert _committed(kafka, group, topic_name) == 5
        first = committer.child
        assert first is not None and first.pid != os.getpid()

        os.kill(first.pid, signal.SIGABRT)  # what librdkafka's failed assertion does
        first.wait(timeout=10)
        # the next commit finds the helper gone and starts a new one
        assert committer.commit(group, topic_name, 0, 9).result(timeout=60) is None
        assert committer.restarts == 1 and committer.child is not first
        assert _committed(kafka, group, topic_name) == 9
    finally:
        committer.close()


def test_commits_in_flight_fail_when_the_helper_dies(kafka_bootstrap, topic_name):
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 1)
    committer = OffsetCommitter(kafka)
    try:
        _lands(committer, f"g-{topic_name}", topic_name, 1)
        child = committer.child
        assert child is not None
        os.kill(child.pid, signal.SIGSTOP)  # a commit sent now is never answered...
        pending = committer.commit(f"g-{topic_name}", topic_name, 0, 2)
        os.kill(child.pid, signal.SIGKILL)  # ...and the helper dies with it in flight
        with pytest.raises(KafkaException, match="offset committer ended"):
            pending.result(timeout=30)
    finally:
        committer.close()
