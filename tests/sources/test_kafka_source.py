"""The Kafka source against a real broker: idleness, resume offsets, bounded reads."""

from __future__ import annotations

import time
from collections.abc import Callable

from infra.kafka_broker import Broker
from kafka_client.settings import KafkaSettings
from operators.batches import END, NEVER
from sources.kafka import READ_DEFAULTS, KafkaSource, PartitionState, reader_config
from tools.produce import create_topics, producer


def _fill(bootstrap: str, topic: str, n: int, partitions: int = 1) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    create_topics(kafka, {topic: {}}, partitions)
    p = producer(kafka)
    for i in range(n):
        p.produce(topic, value=b"{}", timestamp=1_000_000 + i, partition=i % partitions)
    assert p.flush(30) == 0


def _drain(part, seconds: float) -> list:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.extend(part.next_batch())
        time.sleep(0.01)
    return out


def _drain_until(part, done: Callable[[list], bool], timeout: float = 60) -> list:
    """Batches until `done(batches)`, however long a loaded machine takes (up to `timeout`)."""
    out: list = []
    deadline = time.monotonic() + timeout
    while not done(out):
        assert time.monotonic() < deadline, f"not done after {timeout} s: {out[-3:]}"
        out.extend(part.next_batch())
        time.sleep(0.01)
    return out


def test_partition_cut_off_from_its_broker_never_turns_idle(own_broker: Broker):
    _fill(own_broker.bootstrap, "idle", 20_000)
    # tiny fetches: little is buffered locally when the broker dies
    kafka = KafkaSettings(
        bootstrap_servers=own_broker.bootstrap,
        properties={
            "queued.max.messages.kbytes": "1",
            "queued.min.messages": "10",
            "fetch.message.max.bytes": "1024",
        },
    )
    source = KafkaSource(kafka, "idle", 1, batch_size=10, idle_timeout_s=0.2)
    part = source.build_part("read", "0", None)
    deadline = time.monotonic() + 10
    while not any(b.events for b in part.next_batch()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    own_broker.stop(kill=True)
    deadline = time.monotonic() + 20
    while any(b.events for b in part.next_batch()) or time.monotonic() < deadline - 19.5:
        assert time.monotonic() < deadline, "the local buffer should run dry"
    batches = _drain(part, 1.5)  # far beyond the idle timeout
    assert batches, "heartbeats keep coming"
    assert not any(b.events for b in batches)
    assert not any(b.idle for b in batches), "records are waiting: not idle"
    part.close()


def test_a_quiet_partition_turns_idle_again_once_a_restarted_broker_answers(own_broker: Broker):
    """A users topic nobody writes to learns of no broker coming back from its records:
    it must ask, or it never turns idle again, and a join holds every click back for good
    (`just chaos` found enrich's join holding 2,000 clicks a shard, growing)."""
    _fill(own_broker.bootstrap, "quiet", 100)
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap)
    part = KafkaSource(kafka, "quiet", 1, batch_size=1_000, idle_timeout_s=0.3).build_part(
        "read", "0", None
    )
    _drain_until(part, lambda bs: sum(len(b.events) for b in bs) >= 100 and any(b.idle for b in bs))
    own_broker.stop(kill=True)
    down = _drain_until(part, lambda bs: bool(bs) and not bs[-1].idle)
    assert not any(b.events for b in down)
    own_broker.restart()
    # the first batch after the outage that is idle again; none of them reads a record
    back = _drain_until(part, lambda bs: bool(bs) and bs[-1].idle, timeout=90)
    assert not any(b.events for b in back)
    part.close()


def test_caught_up_partition_turns_idle_and_keeps_its_event_time(kafka_bootstrap, topic_name):
    _fill(kafka_bootstrap, topic_name, 100)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    part = KafkaSource(kafka, topic_name, 1, batch_size=1_000, idle_timeout_s=0.3).build_part(
        "read", "0", None
    )

    def read_all_then_idle_twice(batches: list) -> bool:
        read = sum(len(b.events) for b in batches)
        return read >= 100 and sum(b.idle for b in batches) >= 2

    batches = _drain_until(part, read_all_then_idle_twice)
    assert sum(len(b.events) for b in batches) == 100
    idle = [b for b in batches if b.idle]
    # not moved on by the wall clock (a stalled producer's backlog would be late)
    assert idle and all(b.progress == 1_000_099 for b in idle)
    assert all(b.progress == 1_000_099 for b in batches if b.events)
    assert not any(b.was_idle for b in batches[: batches.index(idle[0])])
    assert all(b.was_idle for b in batches[batches.index(idle[0]) :])
    saved = PartitionState._make(part.snapshot())
    assert saved.was_idle is True, "having been idle survives a restart"
    part.close()


def test_resume_state_is_the_next_offset_and_bounded_read_ends(kafka_bootstrap, topic_name):
    _fill(kafka_bootstrap, topic_name, 300)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, stop_at_end=True)
    source = KafkaSource(kafka, topic_name, 1, batch_size=100)
    part = source.build_part("read", "0", None)
    first: list = []
    while not first:
        first = [b for b in part.next_batch() if b.events]
    offset, high, was_idle = part.snapshot()
    assert offset == first[0].origins[-1][2] + 1 and high == first[0].progress
    assert was_idle is False
    part.close()
    resumed = source.build_part("read", "0", (offset, high, was_idle))
    rest = []
    while True:
        try:
            rest.extend(resumed.next_batch())
        except StopIteration:
            break
    offsets = [o for b in first + rest for _, _, o in b.origins or []]
    assert offsets == list(range(300)), "every record once, in order"
    assert rest[-1].progress == END and rest[-1].progress > NEVER
    resumed.close()


def test_a_backlog_is_fetched_without_librdkafkas_second_long_pause_unless_the_user_says():
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9")
    assert (
        reader_config(kafka, "g", print)["fetch.queue.backoff.ms"]
        == READ_DEFAULTS["fetch.queue.backoff.ms"]
    )
    own = KafkaSettings(bootstrap_servers="127.0.0.1:9", properties={"fetch.queue.backoff.ms": "7"})
    config = reader_config(own, "g", print)
    assert config["fetch.queue.backoff.ms"] == "7"
    assert config["group.id"] == "g" and config["auto.offset.reset"] == "error"
