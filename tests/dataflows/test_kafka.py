"""Kafka end to end against a real broker: bounded runs equal replays, the users join,
SASL/PLAIN and SASL_SSL with credentials, and a broker that goes away mid-run."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import dataflows.clickstream
import dataflows.enrich
import dataflows.user_clickstream
from config import Settings
from events import datagen
from infra.kafka_broker import SASL_USERS, SCRAM_USERS, Broker
from kafka_client.settings import KafkaSettings
from tests.processes import ROOT, clean_env, run_flow
from tests.tables import expected_tables, read_rows
from tests.topics import read_topic
from tools.produce import create_topics, produce_replay, producer
from tools.replay_gen import generate

S = 1_000


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dump")
    generate(
        out,
        events=4_000,
        rate=30,
        partitions=4,
        jitter_ms=25_000,
        seed=21,
        pause_every=900,
        pause_ms=120_000,
    )
    return out


def _kafka(bootstrap: str, **topics: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, stop_at_end=True, **topics)  # type: ignore[arg-type]


@pytest.mark.parametrize("table_format", ["parquet", "delta"])
def test_bounded_kafka_run_equals_replay(
    entry_point, kafka_bootstrap, topic_name, dump, tmp_path, table_format
):
    kafka = _kafka(
        kafka_bootstrap,
        clickstream_topic=f"{topic_name}-c",
        user_clickstream_topic=f"{topic_name}-u",
    )
    produce_replay(kafka, dump, 4)

    from_kafka = Settings(
        source="kafka",
        kafka=kafka,
        output=str(tmp_path / "kafka"),
        table_format=table_format,
    )
    entry_point(dataflows.clickstream.build(from_kafka))
    entry_point(dataflows.user_clickstream.build(from_kafka))
    from_replay = Settings(source="replay", replay_path=dump, output=str(tmp_path / "replay"))
    from bytewax.testing import run_main

    run_main(dataflows.clickstream.build(from_replay))
    run_main(dataflows.user_clickstream.build(from_replay))

    expected = expected_tables(dump)
    for table, rows in expected.items():
        got = read_rows(tmp_path / "kafka", table)
        assert len(got) == len(set(got)), table
        assert set(got) == rows == set(read_rows(tmp_path / "replay", table)), table
    assert read_rows(tmp_path / "kafka", "late_events") == []


def _consume_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict, int]]:
    return [
        (r.key, orjson.loads(r.value or b"null"), r.timestamp_ms)
        for r in read_topic(bootstrap, topic)
    ]


def test_enrich_joins_users_as_of_click_time_with_misses(kafka_bootstrap, topic_name, tmp_path):
    kafka = _kafka(
        kafka_bootstrap,
        clickstream_topic=f"{topic_name}-c",
        users_topic=f"{topic_name}-users",
        user_clickstream_topic=f"{topic_name}-o",
    )
    create_topics(
        kafka,
        {kafka.clickstream_topic: {}, kafka.users_topic: {}, kafka.user_clickstream_topic: {}},
        4,
    )
    p = producer(kafka)
    alice = {
        "user_id": 7,
        "username": "alice",
        "registered_at": 1500000000000,
        "city": "London",
        "first_name": "A",
        "last_name": "B",
        "level": "Gold",
    }
    alice_moved = {**alice, "city": "Raleigh"}
    bob = {"user_id": 8, "username": "bob", "registered_at": 1400000000000, "city": "Frankfurt"}
    for user, ts in ((alice, 10 * S), (bob, 10 * S), (alice_moved, 50 * S)):
        p.produce(
            kafka.users_topic,
            key=str(user["user_id"]).encode(),
            value=orjson.dumps(user),
            timestamp=ts,
        )
    clicks = [  # (userid, ts): before/after alice moved, a miss (-1), a user never seen (9)
        (7, 20 * S),
        (7, 60 * S),
        (8, 30 * S),
        (-1, 40 * S),
        (9, 45 * S),
        (8, 5 * S),
    ]
    for i, (uid, ts) in enumerate(clicks):
        click = {
            "ip": f"10.0.0.{i}",
            "userid": uid,
            "request": "GET /index.html HTTP/1.1",
            "status": "404",
            "bytes": "278",
        }
        p.produce(
            kafka.clickstream_topic,
            key=str(click["ip"]).encode(),
            value=orjson.dumps(click),
            timestamp=ts,
            partition=i % 4,
        )
    p.produce(kafka.clickstream_topic, value=b"not json", timestamp=70 * S, partition=0)
    assert p.flush(30) == 0

    from bytewax.testing import run_main

    run_main(dataflows.enrich.build(Settings(source="kafka", kafka=kafka, output=str(tmp_path))))
    out = sorted(_consume_all(kafka_bootstrap, kafka.user_clickstream_topic), key=lambda r: r[2])

    def row(uid, ts, user, i):
        return (
            str(uid).encode(),
            {
                "USERNAME": user["username"] if user else None,
                "REGISTERED_AT": user["registered_at"] if user else None,
                "IP": f"10.0.0.{i}",
                "CITY": user["city"] if user else None,
                "REQUEST": "GET /index.html HTTP/1.1",
                "STATUS": 404,
                "BYTES": 278,
            },
            ts,
        )

    assert out == sorted(
        [
            row(7, 20 * S, alice, 0),  # alice still in London
            row(7, 60 * S, alice_moved, 1),  # after she moved
            row(8, 30 * S, bob, 2),
            row(-1, 40 * S, None, 3),  # userid -1 never matches
            row(9, 45 * S, None, 4),  # no such user
            row(8, 5 * S, None, 5),  # bob did not exist yet at 5 s
        ],
        key=lambda r: r[2],
    )
    dead = read_rows(tmp_path, "dead_letters")
    assert [(d[0], d[1], d[-1][:9]) for d in dead] == [
        ("enrich", kafka.clickstream_topic, "not JSON:")
    ]


def _fill(bootstrap: str, topic: str, n: int) -> None:
    kafka = _kafka(bootstrap, clickstream_topic=topic)
    create_topics(kafka, {topic: {}}, 4)
    gen = datagen.ClickGenerator(3)
    p = producer(kafka)
    for i in range(n):
        click = gen.click()
        p.produce(
            topic,
            key=str(click["ip"]).encode(),
            value=datagen.dumps(click),
            timestamp=1_700_000_000_000 + i * 50,
            partition=i % 4,
        )
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def test_sasl_plain_and_sasl_ssl_with_credentials(own_broker: Broker, tmp_path):
    _fill(own_broker.bootstrap, "clickstream", 2_000)
    user, password = next(iter(SASL_USERS.items()))
    sasl = {
        "CLICKSTREAM_SOURCE": "kafka",
        "KAFKA_STOP_AT_END": "true",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.sasl_bootstrap,
        "CLICKSTREAM_OUTPUT": str(tmp_path / "sasl"),
    }
    proc = run_flow(sasl)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert password not in proc.stderr
    assert read_rows(tmp_path / "sasl", "pages_per_min")

    # Confluent Cloud style: a client.properties file, SASL_SSL, our self-signed CA
    props = tmp_path / "client.properties"
    props.write_text(
        "# as Confluent Cloud hands it out\n"
        f"bootstrap.servers={own_broker.ssl_bootstrap}\n"
        "security.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\n"
        f"sasl.username={user}\nsasl.password={password}\n"
        f"ssl.ca.location={own_broker.ca_file}\n"
    )
    proc = run_flow(
        {
            "CLICKSTREAM_SOURCE": "kafka",
            "KAFKA_STOP_AT_END": "true",
            "KAFKA_CONFIG_FILE": str(props),
            "CLICKSTREAM_OUTPUT": str(tmp_path / "ssl"),
        }
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(read_rows(tmp_path / "ssl", "pages_per_min")) == set(
        read_rows(tmp_path / "sasl", "pages_per_min")
    )

    # wrong password: refused with one clear line, and the secret is not printed
    proc = run_flow({**sasl, "KAFKA_SASL_PASSWORD": "not-the-password"}, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(
        r"error: Kafka at 127\.0\.0\.1:\d+ refused the connection: .*"
        r"(Authentication|credentials|password)",
        lines[0],
    ), lines[0]
    assert "not-the-password" not in proc.stderr


def test_broker_outage_mid_run_loses_and_duplicates_nothing(own_broker: Broker, tmp_path):
    n = 60_000
    _fill(own_broker.bootstrap, "clickstream", n)
    # Small fetches, so the run is still reading when the broker goes away.
    props = tmp_path / "client.properties"
    props.write_text("queued.max.messages.kbytes=64\nfetch.message.max.bytes=16384\n")
    env = {
        "CLICKSTREAM_SOURCE": "kafka",
        "KAFKA_STOP_AT_END": "true",
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap,
        "KAFKA_CONFIG_FILE": str(props),
        "CLICKSTREAM_BATCH_SIZE": "100",
        "CLICKSTREAM_IDLE_TIMEOUT": "2",
        "CLICKSTREAM_OUTPUT": str(tmp_path / "out"),
    }
    clean = clean_env()
    log_path = tmp_path / "flow.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"],
            cwd=ROOT,
            env={**clean, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while log_path.read_text().count("reading from") < 4 and time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()
                time.sleep(0.02)
            own_broker.stop(kill=True)  # the broker dies, as a crashed one would
            # away for longer than the idle timeout: an unreachable partition is not idle
            time.sleep(12)
            assert proc.poll() is None, "the run must wait for the broker, not fail or end"
            own_broker.restart()
            assert proc.wait(timeout=180) == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log_path.read_text()
    assert "waiting for the broker" in text
    # the same input read straight from a healthy broker
    clean_run = run_flow(
        {
            **env,
            "KAFKA_CONFIG_FILE": "",
            "CLICKSTREAM_BATCH_SIZE": "2000",
            "CLICKSTREAM_OUTPUT": str(tmp_path / "clean"),
        }
    )
    assert clean_run.returncode == 0, clean_run.stderr[-2000:]
    for table in ("pages_per_min", "errors_per_min_alert"):
        got = read_rows(tmp_path / "out", table)
        assert len(got) == len(set(got)), f"{table}: duplicates"
        assert set(got) == set(read_rows(tmp_path / "clean", table)), table
        assert got
    m = re.findall(r"read (\d+) records, parsed (\d+), dead letters (\d+)", text)
    assert m and int(m[-1][0]) == n, m[-1:]


def test_enrich_without_its_output_topic_is_one_clear_line(kafka_bootstrap, topic_name):
    kafka = _kafka(
        kafka_bootstrap, clickstream_topic=f"{topic_name}-c", users_topic=f"{topic_name}-u"
    )
    create_topics(kafka, {kafka.clickstream_topic: {}, kafka.users_topic: {}}, 2)
    proc = run_flow(
        {
            "CLICKSTREAM_SOURCE": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "CLICKSTREAM_TOPIC": kafka.clickstream_topic,
            "CLICKSTREAM_USERS_TOPIC": kafka.users_topic,
            "USER_CLICKSTREAM_TOPIC": f"{topic_name}-missing",
        },
        flow="enrich",
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: Kafka topic '{topic_name}-missing' does not exist at {kafka_bootstrap}"
    ]


def test_invalid_librdkafka_setting_is_one_clear_line(kafka_bootstrap, tmp_path):
    props = tmp_path / "client.properties"
    props.write_text("fetch.max.bytes=100\n")
    proc = run_flow(
        {
            "CLICKSTREAM_SOURCE": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_CONFIG_FILE": str(props),
        },
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: invalid Kafka settings:")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_tailing_run_emits_closed_windows_without_end_of_input(
    kafka_bootstrap, topic_name, tmp_path
):
    """Live mode: no end of input, yet windows the watermark has passed reach the files
    within seconds (flushed on age), while the run keeps tailing."""
    kafka = _kafka(kafka_bootstrap, clickstream_topic=topic_name)
    create_topics(kafka, {topic_name: {}}, 2)
    gen = datagen.ClickGenerator(5)
    p = producer(kafka)
    start = int(time.time() * 1000) - 600_000  # ten minutes of clicks, up to now
    for i in range(6_000):
        click = gen.click()
        p.produce(
            topic_name, value=datagen.dumps(click), timestamp=start + i * 100, partition=i % 2
        )
    assert p.flush(30) == 0
    env = clean_env(
        CLICKSTREAM_SOURCE="kafka",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        CLICKSTREAM_TOPIC=topic_name,
        CLICKSTREAM_OUTPUT=str(tmp_path),
        CLICKSTREAM_FLUSH_INTERVAL="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not read_rows(tmp_path, "pages_per_min"):
            assert time.monotonic() < deadline, "no window reached the output while tailing"
            assert proc.poll() is None, "a tailing run does not end by itself"
            time.sleep(0.5)
        ends = [row[2] for row in read_rows(tmp_path, "pages_per_min")]
        # only windows the watermark (latest record - 60 s) has passed
        assert max(ends) <= start + 5_999 * 100 - 60_000
    finally:
        proc.kill()
        proc.wait()


def test_java_credentials_plain_and_scram(own_broker: Broker, tmp_path):
    # the same topic read with the credentials people bring from Java and Spark
    _fill(own_broker.bootstrap, "clickstream", 1_000)
    user, password = next(iter(SASL_USERS.items()))
    scram_user, scram_password = next(iter(SCRAM_USERS.items()))
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    java_props = tmp_path / "client.properties"
    java_props.write_text(
        "# Confluent Cloud's client.properties for Java clients\n"
        f"bootstrap.servers={own_broker.ssl_bootstrap}\n"
        "security.protocol=SASL_SSL\n"
        f"sasl.jaas.config={plain} required username='{user}' password='{password}';\n"
        "sasl.mechanism=PLAIN\n"
        "client.dns.lookup=use_all_dns_ips\n"
        "session.timeout.ms=45000\n"
        "acks=all\n"
        f"ssl.ca.location={own_broker.ca_file}\n"
    )
    base = {"CLICKSTREAM_SOURCE": "kafka", "KAFKA_STOP_AT_END": "true"}
    sasl = {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.sasl_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    }
    runs = {
        "java-file": {**base, "KAFKA_CONFIG_FILE": str(java_props)},
        "notebook": {  # the notebook's kafka.sasl.jaas.config, Databricks' shaded class
            **sasl,
            "KAFKA_SASL_JAAS_CONFIG": f"kafkashaded.{plain} required "
            f'username="{user}" password="{password}";',
        },
        "scram": {
            **sasl,
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_JAAS_CONFIG": "org.apache.kafka.common.security.scram.ScramLoginModule "
            f"required username='{scram_user}' password='{scram_password}';",
        },
    }
    tables = []
    for name, env in runs.items():
        proc = run_flow({**env, "CLICKSTREAM_OUTPUT": str(tmp_path / name)})
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        assert password not in proc.stderr and scram_password not in proc.stderr
        tables.append(set(read_rows(tmp_path / name, "pages_per_min")))
    assert tables[0] and tables[0] == tables[1] == tables[2]

    # a wrong password, and a module that cannot be translated: one line, no secret
    wrong = f"{plain} required username='{user}' password='wrong-pa55word';"
    custom = "com.example.VaultLoginModule required password='wrong-pa55word';"
    for jaas_line, message in (
        (wrong, "refused the connection"),
        (custom, "login module com.example.VaultLoginModule cannot be translated"),
    ):
        proc = run_flow({**sasl, "KAFKA_SASL_JAAS_CONFIG": jaas_line}, timeout=60)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert "wrong-pa55word" not in proc.stderr + proc.stdout
