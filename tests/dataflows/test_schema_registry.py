"""Topics in Schema Registry formats (Avro, JSON Schema, Protobuf in Confluent's framing),
against the real broker and a real registry (Apicurio): the tables equal those of the same
events in JSON, through both table dataflows and the users join; schemas that change
mid-stream; unknown ids; a registry that goes away mid-run."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from bytewax.testing import run_main
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import dataflows.clickstream
import dataflows.enrich
import dataflows.user_clickstream
from config import Settings
from events import datagen
from events.encoders import CLICK, USER, AvroEncoder, JsonSchemaEncoder, ProtobufEncoder
from infra.schema_registry import Registry
from infra.server import free_port
from kafka_client.settings import KafkaSettings, RegistrySettings
from setting import Secret
from tests.link import Link
from tests.monitoring.test_metrics import _free_ports, dataflow, health, scrape, total, wait_for
from tests.processes import clean_env, run_flow
from tests.tables import expected_tables, read_rows
from tests.topics import read_topic
from tools.produce import create_topics, encoder, produce_replay, producer, send
from tools.replay_gen import generate

FORMATS = ["avro", "json_sr", "protobuf"]


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dump")
    generate(
        out,
        events=3_000,
        rate=30,
        partitions=3,
        jitter_ms=25_000,
        seed=28,
        pause_every=900,
        pause_ms=120_000,
    )
    return out


def _kafka(bootstrap: str, registry: Registry, value_format: str, name: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        registry=RegistrySettings(registry.url),
        value_format=value_format,
        stop_at_end=True,
        clickstream_topic=f"{name}-c",
        user_clickstream_topic=f"{name}-u",
        users_topic=f"{name}-users",
    )


@pytest.mark.parametrize("value_format", FORMATS)
def test_both_topics_in_each_format_give_the_tables_of_json(
    entry_point, kafka_bootstrap, registry, topic_name, dump, tmp_path, value_format
):
    kafka = _kafka(kafka_bootstrap, registry, value_format, topic_name)
    produce_replay(kafka, dump, 3)
    first = read_topic(kafka_bootstrap, kafka.clickstream_topic)[0].value
    assert first is not None and first[0] == 0  # framed: the test reads what it means to

    settings = Settings(source="kafka", kafka=kafka, output=str(tmp_path))
    entry_point(dataflows.clickstream.build(settings))
    entry_point(dataflows.user_clickstream.build(settings))

    for table, rows in expected_tables(dump).items():
        got = read_rows(tmp_path, table)
        assert len(got) == len(set(got)), table
        assert set(got) == rows, table
    assert read_rows(tmp_path, "dead_letters") == []
    assert read_rows(tmp_path, "late_events") == []


def _clicks(n: int, start_ms: int = 1_700_000_000_000) -> list[tuple[int, dict]]:
    """`n` datagen clicks, 50 ms apart, as (timestamp, record)."""
    gen = datagen.ClickGenerator(9)
    return [(start_ms + i * 50, gen.click()) for i in range(n)]


def _users() -> list[dict]:
    gen = datagen.ClickGenerator(10)
    return [gen.user(uid) for uid in range(1, datagen.MAX_USER_ID + 1)]


def _produce(kafka: KafkaSettings, topic: str, values: list[tuple[int, str, bytes]]) -> None:
    """(timestamp, key, value) records, spread over the topic's 3 partitions by key."""
    p = producer(kafka)
    for ts, key, value in values:
        send(p, topic, key=key.encode(), value=value, timestamp=ts)
    assert p.flush(60) == 0


def _enrich_output(kafka: KafkaSettings, tmp_path: Path) -> list[tuple[bytes | None, str, int]]:
    """Clicks and users into `kafka`'s topics in its format, `enrich` run over them; its
    output, each value decoded by confluent-kafka's own deserializers (as JSON text)."""
    create_topics(
        kafka,
        {kafka.clickstream_topic: {}, kafka.users_topic: {}, kafka.user_clickstream_topic: {}},
        3,
    )
    users = encoder(kafka, kafka.users_topic, USER)
    registered = 1_600_000_000_000
    _produce(
        kafka, kafka.users_topic, [(registered, str(u["user_id"]), users(u)) for u in _users()]
    )
    clicks = encoder(kafka, kafka.clickstream_topic, CLICK)
    _produce(
        kafka, kafka.clickstream_topic, [(ts, str(c["ip"]), clicks(c)) for ts, c in _clicks(1_500)]
    )
    run_main(dataflows.enrich.build(Settings(source="kafka", kafka=kafka, output=str(tmp_path))))
    assert read_rows(tmp_path, "dead_letters") == []
    decode = _deserializer(kafka)
    return sorted(
        (r.key, orjson.dumps(decode(r.value), option=orjson.OPT_SORT_KEYS).decode(), r.timestamp_ms)
        for r in read_topic(kafka.bootstrap_servers, kafka.user_clickstream_topic)
        if r.value is not None
    )


# The subject is `<topic>-value`. Without this, confluent-kafka (2.14 on) first asks the
# registry's associations endpoint, which Apicurio answers slowly under the suite's load
# (a ReadTimeout failed a run) before it falls back to the same subject.
TOPIC_STRATEGY = {"subject.name.strategy.type": "TOPIC"}


def _deserializer(kafka: KafkaSettings) -> Callable[[bytes], Any]:
    """confluent-kafka's deserializer of the topic's format: not ours, so the test does not
    check our decoding with itself."""
    if kafka.value_format == "json":
        return orjson.loads
    assert kafka.registry is not None
    client = SchemaRegistryClient(kafka.registry.client_config())
    context = SerializationContext(kafka.user_clickstream_topic, MessageField.VALUE)
    if kafka.value_format == "avro":
        avro = AvroDeserializer(client, conf=TOPIC_STRATEGY)
        return lambda value: avro(value, context)
    json_sr = JSONDeserializer(None, schema_registry_client=client, conf=TOPIC_STRATEGY)
    return lambda value: json_sr(value, context)


@pytest.mark.parametrize("value_format", ["avro", "json_sr"])
def test_enrich_writes_its_output_in_the_format_with_its_schema_registered(
    kafka_bootstrap, registry, topic_name, tmp_path, value_format
):
    framed = _kafka(kafka_bootstrap, registry, value_format, f"{topic_name}-sr")
    plain = dataclasses.replace(
        framed,
        value_format="json",
        clickstream_topic=f"{topic_name}-jc",
        users_topic=f"{topic_name}-ju",
        user_clickstream_topic=f"{topic_name}-jo",
    )
    got = _enrich_output(framed, tmp_path / "framed")
    assert got == _enrich_output(plain, tmp_path / "plain")
    assert len(got) == 1_500

    client = SchemaRegistryClient({"url": registry.url, "timeout": 10})
    try:
        latest = client.get_latest_version(f"{framed.user_clickstream_topic}-value")
    finally:
        client.close()
    assert latest.schema.schema_type == {"avro": "AVRO", "json_sr": "JSON"}[value_format]
    if value_format == "avro":  # ksqlDB's record name, upper-case and nullable fields
        schema = json.loads(latest.schema.schema_str or "{}")
        assert schema["name"] == "KsqlDataSourceSchema"
        assert all(f["type"][0] == "null" and f["name"].isupper() for f in schema["fields"])

    # and the tables read from enrich's framed output equal those of the same records in
    # JSON, in the same partitions and order (enrich's order within a partition depends
    # on timing, and with it which records miss their session: so not another run's)
    as_json = dataclasses.replace(
        plain, value_format="json", user_clickstream_topic=f"{topic_name}-copy"
    )
    create_topics(as_json, {as_json.user_clickstream_topic: {}}, 3)
    decode = _deserializer(framed)
    p = producer(as_json)
    for r in read_topic(kafka_bootstrap, framed.user_clickstream_topic):
        value = orjson.dumps(decode(r.value)) if r.value is not None else None
        send(
            p,
            as_json.user_clickstream_topic,
            key=r.key,
            value=value,
            partition=r.partition,
            timestamp=r.timestamp_ms,
        )
    assert p.flush(60) == 0
    for kafka in (framed, as_json):
        settings = Settings(source="kafka", kafka=kafka, output=str(tmp_path / kafka.value_format))
        run_main(dataflows.user_clickstream.build(settings))
    for table in ("click_user_sessions", "user_ip_activity", "dead_letters"):
        rows = read_rows(tmp_path / value_format, table)
        assert Counter(rows) == Counter(read_rows(tmp_path / "json", table)), table
        assert rows or table == "dead_letters", table
    # enrich's output is keyed by user: its partitions interleave in event time, so some
    # records miss their session; the same ones in both formats (the topic name aside)
    late = [
        Counter(r[:-3] + r[-2:] for r in read_rows(tmp_path / f, "late_events"))
        for f in (value_format, "json")
    ]
    assert late[0] == late[1]


def _lines(dump: Path) -> list[dict]:
    """The clicks of a replay dump, as its kcat -J lines."""
    return [orjson.loads(line) for line in (dump / "clickstream.jsonl").read_bytes().splitlines()]


def _produce_clicks(
    kafka: KafkaSettings, lines: list[dict], encode: Callable[[int, dict], bytes]
) -> Producer:
    """Each click of `lines` with its key, partition and time, its value as `encode` makes
    it of the line's number and JSON record; the producer, to add more."""
    p = producer(kafka)
    for i, line in enumerate(lines):
        send(
            p,
            kafka.clickstream_topic,
            key=line["key"].encode(),
            value=encode(i, orjson.loads(line["payload"])),
            partition=line["partition"],
            timestamp=line["ts"],
        )
    return p


def _register(registry_url: str, subject: str, schema: dict) -> int:
    client = SchemaRegistryClient({"url": registry_url, "timeout": 10})
    try:
        return client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    finally:
        client.close()


def _avro(schema_id: int, schema: dict, record: dict) -> bytes:
    out = io.BytesIO(b"\x00" + schema_id.to_bytes(4, "big"))
    out.seek(5)
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def test_a_schema_that_evolves_mid_stream_gives_the_tables_of_json_and_says_what_it_cannot_read(
    kafka_bootstrap, registry, topic_name, dump, tmp_path
):
    kafka = _kafka(kafka_bootstrap, registry, "avro", topic_name)
    subject = f"{kafka.clickstream_topic}-value"
    v1 = AvroEncoder(CLICK).schema
    optional = {"name": "session_id", "type": ["null", "string"], "default": None}
    v2 = {**v1, "fields": [*v1["fields"], optional]}  # adds an optional field
    unused = {"agent", "referrer", "remote_user", "time", "_time"}
    v3 = {**v1, "fields": [f for f in v1["fields"] if f["name"] not in unused]}
    v4 = {**v1, "fields": [f for f in v1["fields"] if f["name"] != "status"]}
    ids = [_register(registry.url, subject, v) for v in (v1, v2, v3, v4)]
    assert len(set(ids)) == 4

    lines = _lines(dump)
    third = len(lines) // 3
    create_topics(kafka, {kafka.clickstream_topic: {}}, 3)

    def evolving(i: int, record: dict) -> bytes:
        version = min(i // third, 2)
        if version == 1:
            record["session_id"] = f"s{i}" if i % 2 else None
        elif version == 2:
            record = {k: v for k, v in record.items() if k not in unused}
        return _avro(ids[version], (v1, v2, v3)[version], record)

    p = _produce_clicks(kafka, lines, evolving)
    # at the end of partition 0, at its last time (so they move no time): records written
    # with a schema that dropped `status` (events whose status is null, as Spark's
    # from_json makes them: an image, in neither table), and records of an id the
    # registry never gave
    last = max(line["ts"] for line in lines if line["partition"] == 0)
    record = orjson.loads(lines[0]["payload"])
    image = {**record, "request": "GET /images/logo-small.png HTTP/1.1"}
    without_status = {k: v for k, v in image.items() if k != "status"}
    for _ in range(5):
        send(
            p,
            kafka.clickstream_topic,
            value=_avro(ids[3], v4, without_status),
            partition=0,
            timestamp=last,
        )
    for _ in range(3):
        send(
            p,
            kafka.clickstream_topic,
            value=_avro(987_654, v1, record),
            partition=0,
            timestamp=last,
        )
    assert p.flush(60) == 0

    run_main(
        dataflows.clickstream.build(Settings(source="kafka", kafka=kafka, output=str(tmp_path)))
    )

    expected = expected_tables(dump)
    for table in ("pages_per_min", "errors_per_min_alert"):
        assert Counter(read_rows(tmp_path, table)) == Counter(expected[table]), table
    reasons = Counter(row[-1] for row in read_rows(tmp_path, "dead_letters"))
    assert len(reasons) == 1 and sum(reasons.values()) == 3, reasons
    (unknown,) = reasons
    assert unknown.startswith("unknown schema id: 987654 is not in the Schema Registry"), unknown
    assert read_rows(tmp_path, "late_events") == []


def test_a_registry_away_mid_run_holds_records_and_loses_none(
    kafka_bootstrap, own_registry, topic_name, dump, tmp_path
):
    """Schema lookups fail (the link to the registry is cut for them) from the run's first
    batch on: the run waits, counts its retries, turns /health 503, dead-letters nothing,
    and once the registry answers again writes the exact tables."""
    with Link(own_registry.port, cut=b"/schemas/ids/") as link:
        url = f"http://127.0.0.1:{link.port}/apis/ccompat/v7"
        key, secret = next(iter(own_registry.users.items()))
        kafka = dataclasses.replace(
            _kafka(kafka_bootstrap, own_registry, "avro", topic_name),
            registry=RegistrySettings(url, Secret(f"{key}:{secret}")),
        )
        produce_replay(kafka, dump, 3)  # registering passes the link; lookups do not
        port = _free_ports(1)
        env = clean_env(
            CLICKSTREAM_SOURCE="kafka",
            CLICKSTREAM_OUTPUT=str(tmp_path / "out"),
            CLICKSTREAM_METRICS_PORT=str(port),
            CLICKSTREAM_STALL_TIMEOUT="2",
            **kafka.to_env(),
        )
        log = tmp_path / "run.log"
        with dataflow(["dataflows.clickstream:flow"], env, log) as proc:
            wait_for(log, "the Schema Registry does not answer", proc, timeout_s=120)
            deadline = time.monotonic() + 60
            while (got := health(port))[0] != 503:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"/health {got}"
                time.sleep(0.5)
            assert any("input waiting" in problem for problem in got[1]["problems"]), got
            assert total(scrape(port), "clickstream_schema_registry_retries_total") >= 2
            assert link.refused >= 2
            link.mend()
            assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "the Schema Registry answers again" in text
    assert secret not in text
    expected = expected_tables(dump)
    for table in ("pages_per_min", "errors_per_min_alert"):
        assert Counter(read_rows(tmp_path / "out", table)) == Counter(expected[table]), table
    assert read_rows(tmp_path / "out", "dead_letters") == []
    assert read_rows(tmp_path / "out", "late_events") == []


def test_a_registry_that_is_wrong_refuses_or_is_away_stops_the_start_with_one_line(
    kafka_bootstrap, own_registry, topic_name, tmp_path
):
    kafka = _kafka(kafka_bootstrap, own_registry, "avro", topic_name)
    create_topics(kafka, {kafka.clickstream_topic: {}}, 1)
    key, secret = next(iter(own_registry.users.items()))
    base = {
        "CLICKSTREAM_SOURCE": "kafka",
        "CLICKSTREAM_OUTPUT": str(tmp_path / "out"),
        "CLICKSTREAM_STORAGE_RETRY_TIMEOUT": "2",
        **kafka.to_env(),
        "KAFKA_SCHEMA_REGISTRY_USER_INFO": f"{key}:{secret}",
    }
    root = own_registry.url.removesuffix("/apis/ccompat/v7")
    closed = free_port()
    cases = {
        "wrong key": (
            {"KAFKA_SCHEMA_REGISTRY_USER_INFO": f"{key}:not-the-secret"},
            r"Schema Registry at http://127\.0\.0\.1:\d+/apis/ccompat/v7 refused the "
            r"credentials \(HTTP 401: Unauthorized\): check KAFKA_SCHEMA_REGISTRY_USER_INFO .*",
        ),
        "no key": (
            {"KAFKA_SCHEMA_REGISTRY_USER_INFO": ""},
            r"Schema Registry at .* refused the credentials \(HTTP 401.*",
        ),
        "wrong path": (
            {"KAFKA_SCHEMA_REGISTRY_URL": f"{root}/apis/registry/v7"},
            r"KAFKA_SCHEMA_REGISTRY_URL http://.* is not a Schema Registry "
            r"\(GET /subjects: HTTP 404\); Apicurio.s is at /apis/ccompat/v7",
        ),
        "away": (
            {"KAFKA_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{closed}"},
            rf"cannot reach the Schema Registry at http://127\.0\.0\.1:{closed} \(.*\) "
            r"within 2 s \(CLICKSTREAM_STORAGE_RETRY_TIMEOUT\)",
        ),
    }
    for case, (env, message) in cases.items():
        proc = run_flow({**base, **env}, timeout=90)
        lines = proc.stderr.strip().splitlines()
        # away is for a while: 75, which a supervisor restarts (setting.Unreachable)
        assert proc.returncode == (75 if case == "away" else 2), (case, proc.stderr[-2000:])
        assert len(lines) == 1 or all("retrying" in line for line in lines[:-1]), (case, lines)
        assert re.fullmatch(f"error: {message}", lines[-1]), (case, lines[-1])
        assert secret not in proc.stderr and "not-the-secret" not in proc.stderr
    assert not (tmp_path / "out" / "pages_per_min").exists()


def _confluent_serializer(value_format: str, client: SchemaRegistryClient) -> Callable[..., Any]:
    """confluent-kafka's own serializer of a format, for Datagen's clicks."""
    conf = {"auto.register.schemas": True, **TOPIC_STRATEGY}
    if value_format == "avro":
        return AvroSerializer(client, AvroEncoder(CLICK).schema_str, conf=conf)
    if value_format == "json_sr":
        return JSONSerializer(JsonSchemaEncoder(CLICK).schema_str, client, conf=conf)
    message = ProtobufEncoder(CLICK).message
    serializer = ProtobufSerializer(message, client, conf=conf)
    return lambda record, context: serializer(message(**record), context)


@pytest.mark.parametrize("value_format", FORMATS)
def test_records_of_confluent_kafkas_own_serializers_give_the_tables_of_json(
    kafka_bootstrap, registry, topic_name, dump, tmp_path, value_format
):
    """Our decoders against the reference writer (the other tests write with ours)."""
    kafka = _kafka(kafka_bootstrap, registry, value_format, topic_name)
    create_topics(kafka, {kafka.clickstream_topic: {}}, 3)
    client = SchemaRegistryClient(kafka.registry.client_config())  # type: ignore[union-attr]
    try:
        serialize = _confluent_serializer(value_format, client)
        context = SerializationContext(kafka.clickstream_topic, MessageField.VALUE)
        p = _produce_clicks(kafka, _lines(dump), lambda _, record: serialize(record, context))
        assert p.flush(60) == 0
    finally:
        client.close()

    run_main(
        dataflows.clickstream.build(Settings(source="kafka", kafka=kafka, output=str(tmp_path)))
    )
    expected = expected_tables(dump)
    for table in ("pages_per_min", "errors_per_min_alert"):
        assert Counter(read_rows(tmp_path, table)) == Counter(expected[table]), table
    assert read_rows(tmp_path, "dead_letters") == []
