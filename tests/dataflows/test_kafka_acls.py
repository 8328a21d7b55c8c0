"""Kafka authorization at start, against the repo's broker with an ACL authorizer and
two SASL/PLAIN users: a topic we may not read, or an output we may not write to, is
one line and exit status 2, before anything is read or written."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from infra import kafka_broker
from infra.kafka_broker import SASL_USERS
from kafka_client.settings import KafkaSettings
from tests.processes import run_flow
from tools.produce import create_topics

ALICE, CAROL = "alice", "carol"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[kafka_broker.Broker]:
    """Topics clickstream, clickstream_users and USER_CLICKSTREAM; alice may read all of
    them but not write USER_CLICKSTREAM nor use the group clickstream-clickstream; carol
    may use none."""
    broker = kafka_broker.start(tmp_path / "kafka", acls=True)
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
        topics = ["clickstream", "clickstream_users", "USER_CLICKSTREAM"]
        create_topics(kafka, {t: {} for t in topics}, 2)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        grants = [
            AclBinding(
                ResourceType.TOPIC,
                topic,
                ResourcePatternType.LITERAL,
                f"User:{ALICE}",
                "*",
                operation,
                AclPermissionType.ALLOW,
            )
            for topic in topics
            for operation in (AclOperation.READ, AclOperation.DESCRIBE)
        ]
        # nor commit offsets to her dataflow's consumer group (what has no ACL is allowed)
        grants.append(
            AclBinding(
                ResourceType.GROUP,
                "clickstream-clickstream",
                ResourcePatternType.LITERAL,
                f"User:{ALICE}",
                "*",
                AclOperation.READ,
                AclPermissionType.DENY,
            )
        )
        for future in admin.create_acls(grants).values():
            future.result(timeout=30)
        yield broker
    finally:
        broker.stop()


def _run(
    broker: kafka_broker.Broker, user: str, flow: str, output: Path
) -> subprocess.CompletedProcess[str]:
    return run_flow(
        {
            "CLICKSTREAM_SOURCE": "kafka",
            "KAFKA_STOP_AT_END": "true",
            "KAFKA_BOOTSTRAP_SERVERS": broker.sasl_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": SASL_USERS[user],
            "CLICKSTREAM_OUTPUT": str(output),
        },
        flow,
    )


def test_topics_we_may_not_read_or_write_are_one_line_at_start(acl_broker, tmp_path):
    # carol may not read the clickstream topic
    proc = _run(acl_broker, CAROL, "clickstream", tmp_path / "carol")
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: Kafka topic 'clickstream' at 127.0.0.1:") and (
        "not authorized (TOPIC_AUTHORIZATION_FAILED)" in line
    ), line
    assert not (tmp_path / "carol").exists()
    assert SASL_USERS[CAROL] not in proc.stderr

    # alice may read, but enrich would write USER_CLICKSTREAM, which she may not
    proc = _run(acl_broker, ALICE, "enrich", tmp_path / "enrich")
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.strip().splitlines()
    assert "Kafka topic 'USER_CLICKSTREAM'" in line and "not authorized to write" in line, line
    assert not (tmp_path / "enrich").exists()

    # and reading what she may read works: the check does not refuse the allowed; she may
    # not commit offsets to the group (no READ on it), which is one warning, not a stop
    proc = _run(acl_broker, ALICE, "clickstream", tmp_path / "alice")
    assert proc.returncode == 0, proc.stderr[-2000:]
    refused = [line for line in proc.stderr.splitlines() if "cannot commit offsets" in line]
    assert len(refused) == 1 and " WARNING " in refused[0], refused
    assert "consumer group 'clickstream-clickstream'" in refused[0]
    assert "GROUP_AUTHORIZATION_FAILED" in refused[0] and "grant READ on the group" in refused[0]
