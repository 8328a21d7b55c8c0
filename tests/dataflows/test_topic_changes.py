"""Kafka changing under a running dataflow, against the repo's broker: partitions added
while it runs, offsets deleted by retention before they were read (at a resume and
mid-run, in both CLICKSTREAM_FAIL_ON_DATA_LOSS modes), a topic deleted or made again,
and the consumer-group offsets Kafka's own tools read."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, OffsetSpec

from events import datagen
from infra.server import free_port
from kafka_client.settings import KafkaSettings
from tests.monitoring.test_metrics import Samples, scrape, total
from tests.processes import clean_env, committed_epoch, start_flow
from tests.tables import clickstream_tables, read_rows
from tools.produce import create_topics, producer, send
from tools.replay_gen import generate

S = 1_000
FLOW = "clickstream"


def _env(bootstrap: str, topic: str, output: Path, **settings: str) -> dict[str, str]:
    return clean_env(
        CLICKSTREAM_SOURCE="kafka",
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        CLICKSTREAM_TOPIC=topic,
        CLICKSTREAM_OUTPUT=str(output),
        CLICKSTREAM_FLUSH_INTERVAL="1",
        **settings,
    )


def _records(dump: Path) -> list[dict[str, Any]]:
    """A replay_gen dump's clicks as dicts (partition, ts, key, payload)."""
    return [orjson.loads(line) for line in (dump / "clickstream.jsonl").read_bytes().splitlines()]


def _produce(kafka: KafkaSettings, topic: str, records: list[dict[str, Any]]) -> None:
    """Each record to its own partition with its own timestamp, every one delivered."""
    p = producer(kafka)
    failed: list[str] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failed.append(err.str())

    for r in records:
        send(
            p,
            topic,
            value=r["payload"].encode(),
            key=r["key"].encode(),
            partition=r["partition"],
            timestamp=r["ts"],
            on_delivery=delivered,
        )
    assert p.flush(60) == 0
    assert not failed, failed[:3]


def _closer(partition: int, ts: int) -> dict[str, Any]:
    """A click that no table counts (no html page, status 200) but that moves event time
    on, so every window before it closes."""
    click = {**datagen.ClickGenerator(1).click(), "request": "GET /x.png HTTP/1.1", "status": "200"}
    return {
        "partition": partition,
        "ts": ts,
        "key": "closer",
        "payload": datagen.dumps(click).decode(),
    }


def _expected(records: list[dict[str, Any]]) -> dict[str, set[tuple]]:
    """pages_per_min and errors_per_min_alert of `records`, none of them late."""
    return clickstream_tables([(r["ts"], orjson.loads(r["payload"])) for r in records])


def _grown(records: list[dict[str, Any]]) -> tuple[list, list, list]:
    """A 4-partition dump as a topic that grows from 2 to 4 partitions 20 s in: what
    partitions 0 and 1 hold before, what the new ones hold (only later records), and
    what partitions 0 and 1 get after."""
    split = records[0]["ts"] + 20 * S
    before = [r for r in records if r["partition"] < 2 and r["ts"] < split]
    new = [r for r in records if r["partition"] >= 2 and r["ts"] >= split]
    after = [r for r in records if r["partition"] < 2 and r["ts"] >= split]
    return before, new, after


def _wait_for(
    what: str,
    check: Callable[[], Any],
    timeout_s: float = 90,
    or_else: Callable[[], None] | None = None,
) -> Any:
    """`check()` once it is true; after `timeout_s`, a failure (or `or_else()`, for a
    caller that says what differs itself)."""
    deadline = time.monotonic() + timeout_s
    while not (got := check()):
        if time.monotonic() >= deadline:
            assert or_else is not None, f"timed out waiting for {what}"
            return or_else()
        time.sleep(0.5)
    return got


@contextmanager
def _running(procs: list[subprocess.Popen]) -> Iterator[list[subprocess.Popen]]:
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("layout", ["1 worker", "-w 2", "2 processes"])
def test_partitions_added_while_running_are_read_from_their_earliest(
    kafka_bootstrap, topic_name, tmp_path, layout
):
    """2 partitions, then 4 while the dataflow runs. The new ones hold only records from
    after the split, as a topic that grows does; the tables equal a batch computation
    over every record produced, and no record is late."""
    dump = tmp_path / "dump"
    generate(dump, events=4_000, rate=100, partitions=4, seed=11)  # 40 s, in order
    records = _records(dump)
    before, new, after = _grown(records)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 2)
    _produce(kafka, topic_name, before)
    log = tmp_path / "flow.log"
    env = _env(
        kafka_bootstrap,
        topic_name,
        tmp_path / "out",
        CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL="1",
        # no partition turns idle: event time moves with the records alone
        CLICKSTREAM_IDLE_TIMEOUT="3600",
    )
    processes = 2 if layout == "2 processes" else 1
    with _running(start_flow(env, layout, log, FLOW)):
        _wait_for("the start", lambda: _text(log).count("reading from offset") >= 2)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_partitions([NewPartitions(topic_name, 4)])[topic_name].result(timeout=30)
        _wait_for("4 partitions", lambda: len(_partitions(admin, topic_name)) == 4)
        _produce(kafka, topic_name, new)
        # every process knows of 4 partitions, and the new ones are open
        _wait_for("discovery", lambda: log.read_text().count("4 partitions, was 2") == processes)
        _wait_for("new partitions", lambda: log.read_text().count("new partition, reading") == 2)
        last = max(r["ts"] for r in records)
        _produce(kafka, topic_name, after + [_closer(p, last + 600 * S) for p in range(4)])
        expected = _expected(before + new + after)
        _wait_for(
            "the tables",
            lambda: all(
                set(read_rows(tmp_path / "out", t)) == rows for t, rows in expected.items()
            ),
            or_else=lambda: None,
        )
    for table, rows in expected.items():
        got = read_rows(tmp_path / "out", table)
        assert len(got) == len(set(got)), table
        assert set(got) == rows, (table, sorted(rows - set(got))[:5], sorted(set(got) - rows)[:5])
    assert read_rows(tmp_path / "out", "late_events") == []


def test_a_resume_after_partitions_were_added_on_another_worker_count_is_exact(
    kafka_bootstrap, topic_name, tmp_path
):
    """Grown from 2 to 4 partitions while running on 1 worker with recovery, killed after
    reading the new ones, resumed as a bounded run on 2 workers: the tables are exact."""
    dump = tmp_path / "dump"
    generate(dump, events=4_000, rate=100, partitions=4, seed=12)
    records = _records(dump)
    before, new, after = _grown(records)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 2)
    _produce(kafka, topic_name, before)
    recovery, out, log = tmp_path / "recovery", tmp_path / "out", tmp_path / "flow.log"
    recovery.mkdir()
    _make_store(recovery, 2)
    port = free_port()
    env = _env(
        kafka_bootstrap,
        topic_name,
        out,
        CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL="1",
        CLICKSTREAM_IDLE_TIMEOUT="3600",
        CLICKSTREAM_METRICS_PORT=str(port),
    )
    with _running(start_flow(env, "1 worker", log, FLOW, recovery)) as [proc]:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        _wait_for("the start", lambda: _text(log).count("reading from offset") >= 2)
        admin.create_partitions([NewPartitions(topic_name, 4)])[topic_name].result(timeout=30)
        _wait_for("4 partitions", lambda: len(_partitions(admin, topic_name)) == 4)
        _produce(kafka, topic_name, new)
        _wait_for("all read", lambda: _read_total(port) == len(before) + len(new))
        read_at = committed_epoch(recovery)
        _wait_for("a snapshot after that", lambda: committed_epoch(recovery) >= read_at + 2)
        proc.send_signal(signal.SIGKILL)
    _produce(kafka, topic_name, after)
    bounded = {**env, "KAFKA_STOP_AT_END": "true"}
    [proc] = start_flow(bounded, "-w 2", tmp_path / "resume.log", FLOW, recovery)
    assert proc.wait(timeout=120) == 0, _text(tmp_path / "resume.log")[-2000:]
    assert _text(tmp_path / "resume.log").count("reading from offset") == 4
    for table, rows in _expected(before + new + after).items():
        got = read_rows(out, table)
        assert len(got) == len(set(got)) and set(got) == rows, table
    assert read_rows(out, "late_events") == []


def _partitions(admin: AdminClient, topic: str) -> dict:
    return admin.list_topics(topic, timeout=10).topics[topic].partitions


def _store(recovery: Path) -> list[tuple]:
    """Every snapshot and commit in a recovery store."""
    rows = []
    for part in sorted(recovery.glob("*.sqlite3")):
        with sqlite3.connect(part) as db:
            rows += db.execute("SELECT 's', step_id, state_key, snap_epoch FROM snaps").fetchall()
            rows += db.execute("SELECT 'c', part_index, commit_epoch FROM commits").fetchall()
    return sorted(rows)


def _make_store(recovery: Path, partitions: int = 1) -> None:
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(recovery), str(partitions)],
        check=True,
        capture_output=True,
    )


def _read_total(port: int) -> float:
    try:
        return total(scrape(port), "clickstream_records_read_total")
    except OSError:
        return -1


def test_retention_gap_before_a_resume_is_one_line_or_a_counted_dead_letter(
    kafka_bootstrap, topic_name, tmp_path
):
    """Read 3,000, snapshotted, killed; 3,000 more; retention deletes below 4,500."""
    dump = tmp_path / "dump"
    generate(dump, events=6_000, rate=100, partitions=1, seed=3)
    records = _records(dump)
    for r in records[3_000:]:  # an hour later: no window is shared with the first half
        r["ts"] += 3_600 * S
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 1)
    _produce(kafka, topic_name, records[:3_000])
    recovery, out, log = tmp_path / "recovery", tmp_path / "out", tmp_path / "flow.log"
    recovery.mkdir()
    _make_store(recovery)
    port = free_port()
    env = _env(kafka_bootstrap, topic_name, out, CLICKSTREAM_METRICS_PORT=str(port))
    with _running(start_flow(env, "1 worker", log, FLOW, recovery)) as [proc]:
        _wait_for("3,000 read", lambda: _read_total(port) == 3_000)
        read_at = committed_epoch(recovery)
        _wait_for("a snapshot after that", lambda: committed_epoch(recovery) >= read_at + 2)
        proc.send_signal(signal.SIGKILL)
    _produce(kafka, topic_name, records[3_000:])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    gone = admin.delete_records([TopicPartition(topic_name, 0, 4_500)])
    gone[TopicPartition(topic_name, 0, 4_500)].result(timeout=30)
    store = _store(recovery)

    bounded = {**env, "KAFKA_STOP_AT_END": "true"}
    [proc] = start_flow(bounded, "1 worker", tmp_path / "fail.log", FLOW, recovery)
    assert proc.wait(timeout=120) == 2
    lines = (tmp_path / "fail.log").read_text().strip().splitlines()
    assert lines[-1] == (
        f"error: kafka topic {topic_name!r} partition 0: data loss: the next offset to read "
        "is 3000 but the earliest still there is 4500; 1500 records were deleted (retention) "
        "before they were read; CLICKSTREAM_FAIL_ON_DATA_LOSS=false reads on from 4500"
    )
    assert not any("Traceback" in line for line in lines)
    assert _store(recovery) == store, "the failed resume changed the recovery store"

    on = {**bounded, "CLICKSTREAM_FAIL_ON_DATA_LOSS": "false", "CLICKSTREAM_METRICS_LINGER": "30"}
    [proc] = start_flow(on, "1 worker", tmp_path / "lenient.log", FLOW, recovery)
    with _running([proc]):
        # the dataflow has ended (every sink closed) and /metrics lingers for a last scrape
        _wait_for("the end", lambda: "/metrics stays up" in _text(tmp_path / "lenient.log"))
        samples = scrape(port)
    assert "end offset 6000 reached" in _text(tmp_path / "lenient.log")
    assert total(samples, "clickstream_records_lost_total", partition="0") == 1_500
    assert total(samples, "clickstream_records_read_total") == 1_500
    warnings = [line for line in _lines(tmp_path / "lenient.log") if "data loss" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], warnings
    [dead] = read_rows(out, "dead_letters")
    assert "records lost: offsets 3000..4499 (1500 records) deleted before they were read" in dead
    expected = _expected(records[:3_000] + records[4_500:])
    for table, rows in expected.items():
        got = read_rows(out, table)
        assert len(got) == len(set(got)) and set(got) == rows, table


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _lines(path: Path) -> list[str]:
    return _text(path).splitlines()


@pytest.mark.parametrize("fail_on_data_loss", ["true", "false"])
def test_retention_overtaking_a_live_run(kafka_bootstrap, topic_name, tmp_path, fail_on_data_loss):
    """The dataflow waits at offset 0 (paused, as a consumer far behind is); 6,000 records
    come and retention deletes the first 4,500 before it reads them."""
    dump = tmp_path / "dump"
    generate(dump, events=6_000, rate=100, partitions=1, seed=4)
    records = _records(dump)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 1)
    port = free_port()
    log = tmp_path / "flow.log"
    env = _env(
        kafka_bootstrap,
        topic_name,
        tmp_path / "out",
        CLICKSTREAM_FAIL_ON_DATA_LOSS=fail_on_data_loss,
        CLICKSTREAM_METRICS_PORT=str(port),
    )
    with _running(start_flow(env, "1 worker", log, FLOW)) as [proc]:
        _wait_for("the start", lambda: "reading from offset 0 (tailing)" in _text(log))
        proc.send_signal(signal.SIGSTOP)
        _produce(kafka, topic_name, records)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        gone = admin.delete_records([TopicPartition(topic_name, 0, 4_500)])
        gone[TopicPartition(topic_name, 0, 4_500)].result(timeout=30)
        proc.send_signal(signal.SIGCONT)
        # A fetch the consumer sent before it was paused is answered by the broker as soon
        # as records come, and is read when it wakes: then the first X records are read
        # and the gap is X..4499 (seen in a CI run: X = 3316). X is 0 unless that
        # happened; either way every record is read or counted lost, once.
        if fail_on_data_loss == "true":
            assert proc.wait(timeout=60) == 2
            last = _lines(log)[-1]
            assert last.startswith(f"error: kafka topic {topic_name!r} partition 0: data loss: ")
            stopped_at = re.search(
                r"the next offset to read is (\d+) but the earliest still there is 4500; "
                r"(\d+) records were deleted",
                last,
            )
            assert stopped_at is not None, last
            read, lost = int(stopped_at[1]), int(stopped_at[2])
            assert read < 4_500 and read + lost == 4_500, last
            return

        def settled() -> Samples | None:
            try:
                samples = scrape(port)
            except OSError:
                return None
            read = total(samples, "clickstream_records_read_total")
            lost = total(samples, "clickstream_records_lost_total", partition="0")
            return samples if lost > 0 and read + lost == 6_000 else None

        samples = _wait_for("every record read or lost", settled)
        _wait_for("the dead letter", lambda: read_rows(tmp_path / "out", "dead_letters"))
    first = int(6_000 - 1_500 - total(samples, "clickstream_records_lost_total", partition="0"))
    assert total(samples, "clickstream_records_read_total") == first + 1_500
    [dead] = read_rows(tmp_path / "out", "dead_letters")
    gap = f"offsets {first}..4499 ({4_500 - first} records) deleted before they were read"
    assert f"records lost: {gap}" in dead
    assert len([line for line in _lines(log) if "data loss" in line]) == 1


_COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def _group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets (OffsetFetch, as Kafka's lag tools ask); -1001: none.

    Asked by a consumer of the group that joins nothing: AdminClient's
    list_consumer_group_offsets crashes librdkafka 2.16 (rd_kafka_cgrp_op) on a broker
    whose group coordinator is still loading."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    asked = [TopicPartition(topic, p) for p in range(partitions)]
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                return [tp.offset for tp in consumer.committed(asked, timeout=30)]
            except KafkaException as ex:  # a new broker's coordinator is not ready yet
                loading = ex.args[0].retriable() or ex.args[0].code() in _COORDINATOR_NOT_READY
                if not loading or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def _end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    asked = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    answers = admin.list_offsets(asked, request_timeout=30)
    return [answers[tp].result(timeout=30).offset for tp in asked]


def test_group_offsets_trail_a_live_run_and_reach_the_end_of_a_bounded_one(
    kafka_bootstrap, topic_name, tmp_path
):
    dump = tmp_path / "dump"
    generate(dump, events=3_000, rate=100, partitions=3, seed=8)
    records = _records(dump)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 3)
    _produce(kafka, topic_name, records[:1_000])
    group = "clickstream-clickstream"  # the default: clickstream-<dataflow>
    own = f"{topic_name}-group"
    log = tmp_path / "live.log"
    env = _env(kafka_bootstrap, topic_name, tmp_path / "live", KAFKA_GROUP_ID=own)
    with _running(start_flow(env, "1 worker", log, FLOW)):
        # while records keep coming, what is committed trails the end offsets
        trailing = []
        for chunk in range(1, 3):
            _produce(kafka, topic_name, records[chunk * 1_000 : (chunk + 1) * 1_000])
            trailing.append(_group_offsets(kafka_bootstrap, own, topic_name, 3))
        ends = _end_offsets(kafka_bootstrap, topic_name, 3)
        assert any(sum(max(o, 0) for o in seen) < sum(ends) for seen in trailing), trailing
        # and catches up, one epoch behind what was read
        _wait_for("lag 0", lambda: _group_offsets(kafka_bootstrap, own, topic_name, 3) == ends)

    [proc] = start_flow(
        _env(kafka_bootstrap, topic_name, tmp_path / "bounded", KAFKA_STOP_AT_END="true"),
        "1 worker",
        tmp_path / "bounded.log",
        FLOW,
    )
    assert proc.wait(timeout=120) == 0
    assert _group_offsets(kafka_bootstrap, group, topic_name, 3) == ends


def test_a_bounded_run_commits_its_end_offsets_on_a_broker_that_never_saw_a_group(
    own_broker, topic_name, tmp_path
):
    # The first group request to a new broker creates __consumer_offsets: until its
    # coordinator is up, commits fail with retriable errors, and a bounded run ends with
    # the commit at close.
    bootstrap = own_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert "__consumer_offsets" not in admin.list_topics(timeout=30).topics
    dump = tmp_path / "dump"
    generate(dump, events=8_000, rate=200, partitions=4, seed=12)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    create_topics(kafka, {topic_name: {}}, 4)
    _produce(kafka, topic_name, _records(dump))
    env = _env(bootstrap, topic_name, tmp_path / "out", KAFKA_STOP_AT_END="true")
    [proc] = start_flow(env, "1 worker", tmp_path / "bounded.log", FLOW)
    assert proc.wait(timeout=120) == 0, _text(tmp_path / "bounded.log")[-3000:]
    ends = _end_offsets(bootstrap, topic_name, 4)
    assert sum(ends) == 8_000
    assert _group_offsets(bootstrap, "clickstream-clickstream", topic_name, 4) == ends


def test_a_topic_deleted_while_running_is_one_line(kafka_bootstrap, topic_name, tmp_path):
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, {topic_name: {}}, 2)
    log = tmp_path / "flow.log"
    env = _env(
        kafka_bootstrap, topic_name, tmp_path / "out", CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL="1"
    )
    with _running(start_flow(env, "1 worker", log, FLOW)) as [proc]:
        _wait_for("the start", lambda: _text(log).count("reading from offset") == 2)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.delete_topics([topic_name])[topic_name].result(timeout=30)
        assert proc.wait(timeout=60) == 2
    errors = [line for line in _lines(log) if line.startswith("error:")]
    assert errors == [f"error: Kafka topic {topic_name!r} was deleted while the dataflow read it"]
    assert "Traceback" not in _text(log)


def test_a_resume_on_a_topic_made_again_with_fewer_partitions_is_one_line(
    kafka_bootstrap, topic_name, tmp_path
):
    dump = tmp_path / "dump"
    generate(dump, events=400, rate=100, partitions=3, seed=9)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, stop_at_end=True)
    create_topics(kafka, {topic_name: {}}, 3)
    _produce(kafka, topic_name, _records(dump))
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    _make_store(recovery)
    env = _env(kafka_bootstrap, topic_name, tmp_path / "out", KAFKA_STOP_AT_END="true")
    [proc] = start_flow(env, "1 worker", tmp_path / "first.log", FLOW, recovery)
    assert proc.wait(timeout=120) == 0
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([topic_name])[topic_name].result(timeout=30)
    _wait_for("the topic gone", lambda: topic_name not in admin.list_topics(timeout=10).topics)
    _wait_for("the topic made again", lambda: _recreate(kafka, topic_name))
    [proc] = start_flow(env, "1 worker", tmp_path / "again.log", FLOW, recovery)
    assert proc.wait(timeout=120) == 2
    errors = [line for line in _lines(tmp_path / "again.log") if line.startswith("error:")]
    assert len(errors) == 1 and "deleted and made again" in errors[0], errors


def _recreate(kafka: KafkaSettings, topic: str) -> bool:
    try:
        create_topics(kafka, {topic: {}}, 1)
    except Exception:
        return False
    return True
