"""The Kafka sink against a real broker: a restart neither repeats nor loses records."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Producer

from kafka_client.settings import KafkaSettings
from setting import ConfigError
from sinks.kafka import (
    ORIGIN_HEADER,
    WRITE_DEFAULTS,
    KafkaRecord,
    KafkaTopicSink,
    partition_of,
    writer_config,
)
from tests.topics import read_topic
from tools.produce import create_topics


def _records(offsets: range, partition: int = 1) -> list[KafkaRecord]:
    return [
        KafkaRecord(str(o % 7).encode(), f"v{o}".encode(), 1_000 + o, ("clicks", partition, o))
        for o in offsets
    ]


def _read(kafka: KafkaSettings, topic: str) -> list[tuple]:
    """(partition, key, value, origin header) of every record in `topic`."""
    return [
        (r.partition, r.key, r.value, r.headers[ORIGIN_HEADER])
        for r in read_topic(kafka.bootstrap_servers, topic)
    ]


def _sink(bootstrap: str, topic: str, partitions: int, parts: int) -> KafkaTopicSink:
    """A sink with `parts` sink partitions, to a new topic of `partitions` partitions."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    create_topics(kafka, {topic: {}}, partitions)
    return KafkaTopicSink(kafka, topic, parts=parts)


def _other_writers_transaction(bootstrap: str, topic: str) -> Producer:
    """Another writer's transaction with the records of inputs 0-2, flushed, not ended."""
    other = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
    other.init_transactions(30)
    other.begin_transaction()
    for o in range(3):
        other.produce(topic, b"v", b"k", headers=[("origin", f"clicks/0/{o}".encode())])
    other.flush(30)
    return other


def test_a_restart_writes_each_input_once(kafka_bootstrap, topic_name):
    sink = _sink(kafka_bootstrap, topic_name, partitions=3, parts=2)

    first = sink.build_part("write", "1", None)
    first.write_batch([_records(range(0, 10))])
    saved = first.snapshot()
    first.write_batch([_records(range(10, 20))])
    first.producer.flush(10)  # written, but the crash comes before the next snapshot
    # the restart resumes from `saved` and sees inputs 10.. again, and some new ones
    second = sink.build_part("write", "1", saved)
    second.write_batch([_records(range(10, 15)), _records(range(15, 30))])
    second.close()

    got = _read(sink.kafka, topic_name)
    want = _records(range(30))
    assert Counter((k, v) for _, k, v, _ in got) == Counter((r.key, r.value) for r in want)
    assert sorted(origin for *_, origin in got) == sorted(
        f"clicks/1/{o}".encode() for o in range(30)
    )
    # keyed the way librdkafka's default partitioner does it
    assert all(p == partition_of(k, 3) for p, k, _, _ in got)
    assert second.skipped == 10


def test_a_second_crash_during_the_replay_forgets_nothing(kafka_bootstrap, topic_name):
    sink = _sink(kafka_bootstrap, topic_name, partitions=2, parts=1)
    first = sink.build_part("write", "0", None)
    first.write_batch([_records(range(0, 10))])
    at_10 = first.snapshot()
    first.write_batch([_records(range(10, 30))])
    first.producer.flush(10)  # crash: inputs 10-29 are written, the state says 10
    second = sink.build_part("write", "0", at_10)
    second.write_batch([_records(range(10, 15))])  # the replay has only come this far
    at_15 = second.snapshot()
    second.producer.flush(10)  # and crashes again
    # inputs 15-29 were written by the first run, before anything the second one read back
    third = sink.build_part("write", "0", at_15)
    third.write_batch([_records(range(15, 40))])
    third.close()
    got = sorted(origin for *_, origin in _read(sink.kafka, topic_name))
    assert got == sorted(f"clicks/1/{o}".encode() for o in range(40))
    assert (second.skipped, third.skipped) == (5, 15)


def test_a_crash_before_the_first_snapshot_is_not_repeated(kafka_bootstrap, topic_name):
    sink = _sink(kafka_bootstrap, topic_name, partitions=2, parts=1)
    first = sink.build_part("write", "0", None)
    first.write_batch([_records(range(0, 8), partition=0)])
    first.producer.flush(10)  # no snapshot was ever taken: the restart has no state
    second = sink.build_part("write", "0", None)
    second.write_batch([_records(range(0, 12), partition=0)])
    second.close()
    got = sorted(origin for *_, origin in _read(sink.kafka, topic_name))
    assert got == sorted(f"clicks/0/{o}".encode() for o in range(12))


def test_records_of_one_input_partition_go_to_one_sink_partition():
    sink = KafkaTopicSink(KafkaSettings(bootstrap_servers="unused:9092"), "t", parts=2)
    records = _records(range(3), partition=0) + _records(range(3), partition=3)
    assert sorted((part, len(rs)) for part, rs in sink.group(records)) == [("0", 3), ("1", 3)]
    no_origin = KafkaRecord(b"k", b"v", 1)
    assert sink.group([no_origin]) == [("0", [no_origin])]


def test_read_back_ends_at_a_transaction_marker(kafka_bootstrap, topic_name):
    # another writer's transaction leaves a commit marker as the last offset: an
    # offset with no record to read, which must still end the read-back
    sink = _sink(kafka_bootstrap, topic_name, partitions=1, parts=1)
    _other_writers_transaction(kafka_bootstrap, topic_name).commit_transaction(30)
    restarted = sink.build_part("write", "0", None)
    restarted.write_batch([_records(range(5), partition=0)])
    restarted.close()
    got = sorted(origin for *_, origin in _read(sink.kafka, topic_name))
    assert got == sorted(f"clicks/0/{o}".encode() for o in range(5))
    assert restarted.skipped == 3


def test_read_back_sees_records_whose_transaction_is_not_settled(kafka_bootstrap, topic_name):
    # commit_transaction() returns before the commit markers reach the partitions; until
    # they do, a read_committed consumer's end offset stops short of those records. The
    # read-back must still find them: an open transaction holds that moment still.
    sink = _sink(kafka_bootstrap, topic_name, partitions=1, parts=1)
    other = _other_writers_transaction(kafka_bootstrap, topic_name)  # open, records in the log
    restarted = sink.build_part("write", "0", None)
    restarted.write_batch([_records(range(5), partition=0)])
    restarted.close()
    other.commit_transaction(30)
    got = sorted(origin for *_, origin in _read(sink.kafka, topic_name))
    assert got == sorted(f"clicks/0/{o}".encode() for o in range(5))
    assert restarted.skipped == 3


def test_a_first_start_keeps_only_its_own_inputs_origins(kafka_bootstrap, topic_name):
    # sink partitions are built when their first record comes; one built after another
    # has written reads those records back too, but their inputs never come to it
    sink = _sink(kafka_bootstrap, topic_name, partitions=2, parts=2)
    first = sink.build_part("write", "0", None)
    first.write_batch([_records(range(50), partition=0)])
    first.close()
    late = sink.build_part("write", "1", None)
    assert late.written == {}
    late.write_batch([_records(range(20), partition=1)])
    late.close()
    assert sorted(sink.group(_records(range(3), partition=0)))[0][0] == "0"
    assert len(_read(sink.kafka, topic_name)) == 70


def test_the_users_producer_settings_override_the_defaults_but_not_idempotence():
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9")
    assert writer_config(kafka, 30)["linger.ms"] == WRITE_DEFAULTS["linger.ms"]
    own = KafkaSettings(
        bootstrap_servers="127.0.0.1:9",
        properties={"linger.ms": "50", "compression.type": "zstd", "enable.idempotence": "false"},
    )
    config = writer_config(own, 30)
    assert (config["linger.ms"], config["compression.type"]) == ("50", "zstd")
    assert config["enable.idempotence"] is True, "exactly once needs it, whatever the file says"


def _timeout_ms(lease_timeout_s: float, **properties: str) -> int:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", properties=properties)
    config = writer_config(kafka, lease_timeout_s)
    assert "delivery.timeout.ms" not in config, "one name for the setting, or librdkafka picks"
    return int(config["message.timeout.ms"])


def test_a_record_expires_within_a_quarter_of_the_lease_timeout(caplog):
    # librdkafka's own default (5 minutes) would let a paused process's records land
    # after a takeover (tests/dataflows/test_recovery.py, the paused enrich)
    assert _timeout_ms(30) == 7_500
    assert _timeout_ms(10) == 2_500
    assert not caplog.records, "no warning when the user asked for nothing"
    # shorter ones asked for are kept; longer ones, and 0 (no timeout), are lowered, loudly
    assert _timeout_ms(30, **{"message.timeout.ms": "2000"}) == 2_000
    assert _timeout_ms(30, **{"delivery.timeout.ms": "2000"}) == 2_000
    assert not caplog.records
    assert _timeout_ms(30, **{"message.timeout.ms": "300000"}) == 7_500
    assert _timeout_ms(30, **{"delivery.timeout.ms": "0"}) == 7_500
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("CLICKSTREAM_LEASE_TIMEOUT" in w for w in warned), warned


def test_a_linger_as_long_as_the_timeout_is_one_clear_line():
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", properties={"linger.ms": "3000"})
    with pytest.raises(ConfigError, match=r"linger.ms 3000 must be below message.timeout.ms 2500"):
        writer_config(kafka, 10)
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", properties={"linger.ms": "soon"})
    with pytest.raises(ConfigError, match="invalid Kafka settings"):
        writer_config(kafka, 10)


def test_a_record_not_acknowledged_in_time_names_the_setting_and_the_lease(
    kafka_bootstrap, topic_name
):
    part = _sink(kafka_bootstrap, topic_name, partitions=1, parts=1).build_part("write", "0", None)
    assert part.send_window_s == 7.5
    part.failures.append("Local: Message timed out")
    with pytest.raises(RuntimeError) as raised:
        part.write_batch([])
    said = str(raised.value)
    assert said.startswith(f"producing to {topic_name} failed: Local: Message timed out"), said
    assert "message.timeout.ms, 7.5 s" in said and "CLICKSTREAM_LEASE_TIMEOUT" in said, said


def test_a_failure_as_the_sink_closes_stops_with_its_reason(
    kafka_bootstrap, topic_name, stop_lines
):
    """Raised from close(), Bytewax's panic would abort the process and drop the reason:
    `enrich`'s four partitions did, against a broker that gave no producer ID."""
    part = _sink(kafka_bootstrap, topic_name, partitions=1, parts=1).build_part("write", "0", None)
    part.failures.append("Local: Message timed out")
    with pytest.raises(SystemExit) as stopped:
        part.close()
    assert stopped.value.code == 1  # a restart may help
    assert len(stop_lines) == 1 and stop_lines[0].startswith(
        f"kafka sink {part.name}: closing: producing to {topic_name} failed: "
        "Local: Message timed out (not acknowledged within message.timeout.ms"
    ), stop_lines
