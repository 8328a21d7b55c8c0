"""clickstream LEFT JOIN clickstream_users -> USER_CLICKSTREAM: our replacement for ksqlDB.

    CLICKSTREAM_SOURCE=kafka python -m bytewax.run dataflows.enrich:flow

Each click is joined, on userid = user_id, with the latest user record as of the
click's time; a miss (userid -1 or 0, or a user not seen yet) leaves USERNAME,
REGISTERED_AT and CITY null. The output record has key user_id, upper-case value
fields with numbers as numbers, and the click's own timestamp, so event time
survives the join. It is JSON, or with `KAFKA_VALUE_FORMAT` set to a Schema Registry
format, that format with its schema registered under `USER_CLICKSTREAM-value`, as
ksqlDB writes it. The three streams are the repo's declarations (`streams/`), the
join's columns are `events.user_clicks`. Unparseable records go to the dead_letters table. With
recovery (`-r`), a restart neither loses nor repeats output records (see
`sinks.kafka`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from operator import attrgetter
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from config import Settings, slow_reads_for_tests, slow_writes_for_tests
from dataflows.common import SINK_PARTS, flow_from_env, write_tables
from events.encoders import ksql_shape
from events.parse import Parser
from events.schema import RawRecord
from events.streams import event_type
from events.user_clicks import user_click
from kafka_client.admin import check_topics
from kafka_client.schema_registry import check_registry
from monitoring.metrics import JOIN_TABLE_SIZE
from operators.join import Joined, JoinStats, lookup_join
from setting import ConfigError
from sinks.kafka import KafkaRecord, KafkaTopicSink, value_encoder
from sources.kafka import KafkaSource
from sql import all_streams

# the columns the join reads of each side
CLICK_COLUMNS = frozenset({"ip", "userid", "request", "status", "bytes"})
USER_COLUMNS = frozenset({"user_id", "username", "registered_at", "city"})


def _enriched(joined: list[Joined[Any, Any]], encode: Callable[[Any], bytes]) -> list[KafkaRecord]:
    return [
        KafkaRecord(
            str(j.left.userid).encode(), encode(user_click(j.left, j.right)), j.time, j.origin
        )
        for j in joined
    ]


def build(settings: Settings) -> Dataflow:
    kafka = settings.kafka
    if kafka is None:
        raise ConfigError("dataflows.enrich reads Kafka: set CLICKSTREAM_SOURCE=kafka")
    streams = all_streams(settings.streams)
    clicks_in, users_in, out = (
        streams[name] for name in ("clickstream", "clickstream_users", "user_clickstream")
    )
    clicks_topic = kafka.topic_of(clicks_in.name, clicks_in.topic)
    users_topic = kafka.topic_of(users_in.name, users_in.topic)
    out_topic = kafka.topic_of(out.name, out.topic)
    # the output topic too: the sink reads it back on start, so it must exist
    counts = check_topics(kafka, [clicks_topic, users_topic, out_topic], writes=[out_topic])
    if kafka.registry is not None and kafka.value_format != "json":
        check_registry(kafka.registry, settings.storage_retry_s)
    encode = value_encoder(kafka, out_topic, ksql_shape(out.columns))
    flow = Dataflow("enrich")

    def read(step: str, topic: str) -> Any:
        source = KafkaSource(
            kafka,
            topic,
            counts[topic],
            settings.batch_size,
            settings.idle_timeout_s,
            settings.max_future_skew_s,
            "enrich",
            slow_reads_s=slow_reads_for_tests(),
        )
        return op.input(step, flow, source)

    raw_clicks = read("read_clicks", clicks_topic)
    raw_users = read("read_users", users_topic)
    value_format = kafka.value_format
    click_type = event_type(clicks_in, CLICK_COLUMNS)
    user_type = event_type(users_in, USER_COLUMNS)

    def deleted_user(record: RawRecord) -> Any:
        """A tombstone on the compacted users topic deletes that user."""
        try:
            return user_type(user_id=int(record.key)) if record.key is not None else None
        except ValueError:
            return None

    clicks = op.map(
        "parse_clicks", raw_clicks, Parser(click_type, "enrich clicks", value_format=value_format)
    )
    users = op.map(
        "parse_users",
        raw_users,
        Parser(user_type, "enrich users", on_tombstone=deleted_user, value_format=value_format),
    )
    users_held = JoinStats()
    JOIN_TABLE_SIZE.labels(flow.flow_id, "users").set_function(users_held.table_rows)
    joined = lookup_join(
        "join_users",
        op.map("click_events", clicks, attrgetter("events")),
        op.map("user_events", users, attrgetter("events")),
        left_key=lambda c: c.userid,
        right_key=lambda u: u.user_id,
        stats=users_held,
    )
    sink = KafkaTopicSink(
        kafka,
        out_topic,
        SINK_PARTS,
        slow_writes_s=slow_writes_for_tests(),
        dataflow=flow.flow_id,
        lease_timeout_s=settings.lease_timeout_s,
    )
    enriched = op.map("enriched", joined, partial(_enriched, encode=encode))
    op.output("write_user_clickstream", op.flat_map("by_sink_part", enriched, sink.group), sink)
    dead = op.merge(
        "dead",
        op.filter_map("dead_clicks", clicks, lambda p: p.dead or None),
        op.filter_map("dead_users", users, lambda p: p.dead or None),
    )
    write_tables(flow, settings, raw_clicks, dead, [])
    return flow


def __getattr__(name: str) -> Dataflow:
    # `flow` is built from the environment only when `python -m bytewax.run` asks for it,
    # so tests can import `build` without a configured environment.
    if name == "flow":
        return flow_from_env(build)
    raise AttributeError(name)
