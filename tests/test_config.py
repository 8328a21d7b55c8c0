"""Settings: validation with one-line errors, librdkafka files, secrets that never print."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from config import Settings
from kafka_client.settings import KafkaSettings, RegistrySettings
from setting import ConfigError, Secret, settings_table, to_env


def test_defaults_run_the_embedded_datagen():
    settings = Settings.from_env({})
    assert settings.source == "datagen" and settings.output == "./output"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLICKSTREAM_SOURCE": "kafka"}, "needs KAFKA_BOOTSTRAP_SERVERS"),
        ({"CLICKSTREAM_BATCH_SIZE": "0"}, "CLICKSTREAM_BATCH_SIZE: must be at least 1"),
        ({"CLICKSTREAM_DATAGEN_COUNT": "1.5"}, "expected an integer"),
        (
            {
                "CLICKSTREAM_SOURCE": "kafka",
                "KAFKA_BOOTSTRAP_SERVERS": "x:1",
                "KAFKA_STOP_AT_END": "maybe",
            },
            "KAFKA_STOP_AT_END: expected true or false",
        ),
        (
            {
                "CLICKSTREAM_SOURCE": "kafka",
                "KAFKA_BOOTSTRAP_SERVERS": "x:1",
                "CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL": "-1",
            },
            "CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL: must be at least 0",
        ),
        (
            {
                "CLICKSTREAM_SOURCE": "kafka",
                "KAFKA_BOOTSTRAP_SERVERS": "x:1",
                "CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL": "often",
            },
            "CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL: expected a number",
        ),
        (
            {
                "CLICKSTREAM_SOURCE": "kafka",
                "KAFKA_BOOTSTRAP_SERVERS": "x:1",
                "CLICKSTREAM_FAIL_ON_DATA_LOSS": "sometimes",
            },
            "CLICKSTREAM_FAIL_ON_DATA_LOSS: expected true or false",
        ),
        (
            {
                "CLICKSTREAM_SOURCE": "kafka",
                "KAFKA_BOOTSTRAP_SERVERS": "x:1",
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            },
            "needs KAFKA_SASL_USERNAME",
        ),
        (
            {
                "CLICKSTREAM_SOURCE": "kafka",
                "KAFKA_BOOTSTRAP_SERVERS": "x:1",
                "KAFKA_SECURITY_PROTOCOL": "TLS",
            },
            "is not one of PLAINTEXT",
        ),
    ],
)
def test_bad_values_are_one_line_errors(env, message):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_confluent_client_properties_and_env_secrets_never_print(tmp_path):
    props = tmp_path / "client.properties"
    props.write_text(
        "# Required connection configs for Kafka producer, consumer, and admin\n"
        "bootstrap.servers=pkc-123.europe-west1.gcp.confluent.cloud:9092\n"
        "security.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\n"
        "sasl.username=APIKEY\nsasl.password=s3cr3t-from-file\n"
        "session.timeout.ms=45000\n"
    )
    kafka = KafkaSettings.from_env({"KAFKA_CONFIG_FILE": str(props)})
    assert kafka.bootstrap_servers == "pkc-123.europe-west1.gcp.confluent.cloud:9092"
    conf = kafka.librdkafka_config()
    assert conf["sasl.password"] == "s3cr3t-from-file" and conf["session.timeout.ms"] == "45000"
    assert "s3cr3t" not in repr(kafka) and "s3cr3t" not in str(kafka.properties)

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "u",
        "KAFKA_SASL_PASSWORD": "env-secret",
        "KAFKA_CONFIG_FILE": str(props),
    }
    kafka = KafkaSettings.from_env(env)
    assert kafka.bootstrap_servers == "b:9092"  # the variable wins over the file
    assert kafka.librdkafka_config()["sasl.password"] == "env-secret"
    assert "env-secret" not in repr(Settings(source="kafka", kafka=kafka))
    assert repr(Secret("x")) == "Secret('***')"


def test_unreadable_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="KAFKA_CONFIG_FILE: cannot read"):
        KafkaSettings.from_env({"KAFKA_CONFIG_FILE": str(tmp_path / "missing.properties")})
    bad = tmp_path / "bad.properties"
    bad.write_text("just words\n")
    with pytest.raises(ConfigError, match=r"bad\.properties:1: expected key=value"):
        KafkaSettings.from_env({"KAFKA_CONFIG_FILE": str(bad)})


def test_the_docs_table_of_settings_is_the_declared_one():
    """docs/configuration.md shows what `python -m config` prints from the declarations."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    block = docs.split("<!-- declared settings: python -m config -->\n")[1]
    block = block.split("\n<!-- end of declared settings -->")[0]
    assert block.splitlines()[2:] == settings_table(Settings, KafkaSettings).splitlines()


def test_every_declared_setting_is_read_with_its_default_and_bounds():
    defaults = Settings.from_env({})
    for f in fields(Settings):
        if "var" in f.metadata:
            assert getattr(defaults, f.name) == f.default, f.name
            if f.metadata["minimum"] is not None:
                with pytest.raises(ConfigError, match=f.metadata["var"]):
                    Settings.from_env({f.metadata["var"]: "-1"})


def test_settings_give_back_the_variables_they_were_read_from():
    env = {
        "CLICKSTREAM_SOURCE": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
        "CLICKSTREAM_TOPIC": "clicks",
        "KAFKA_STOP_AT_END": "true",
        "KAFKA_GROUP_ID": "mine",
        "CLICKSTREAM_FAIL_ON_DATA_LOSS": "false",
        "CLICKSTREAM_BATCH_SIZE": "17",
        "CLICKSTREAM_FLUSH_INTERVAL": "0.5",
    }
    settings = Settings.from_env(env)
    assert settings.kafka is not None
    again = Settings.from_env(
        {"CLICKSTREAM_SOURCE": "kafka", **settings.kafka.to_env(), **to_env(settings)}
    )
    assert again == settings
    assert again.kafka is not None and again.kafka.group_id == "mine"
    assert to_env(settings)["CLICKSTREAM_BATCH_SIZE"] == "17"
    assert "CLICKSTREAM_DATAGEN_COUNT" not in to_env(settings), "unset stays unset"


def test_schema_registry_settings_come_from_client_properties_as_confluent_cloud_writes_them(
    tmp_path, caplog
):
    props = tmp_path / "client.properties"
    props.write_text(
        "bootstrap.servers=pkc-123.europe-west1.gcp.confluent.cloud:9092\n"
        "# Required connection configs for Confluent Cloud Schema Registry\n"
        "schema.registry.url=https://psrc-456.europe-west3.gcp.confluent.cloud\n"
        "basic.auth.credentials.source=USER_INFO\n"
        "basic.auth.user.info=SRKEY:sr-secret-value\n"
    )
    kafka = KafkaSettings.from_env({"KAFKA_CONFIG_FILE": str(props)})
    assert kafka.registry is not None
    assert kafka.registry.url == "https://psrc-456.europe-west3.gcp.confluent.cloud"
    assert kafka.registry.client_config()["basic.auth.user.info"] == "SRKEY:sr-secret-value"
    assert "sr-secret-value" not in repr(kafka) + str(kafka.registry)
    assert not any("schema.registry" in r.getMessage() for r in caplog.records)
    # librdkafka never sees them (it refuses unknown properties)
    assert not any("schema" in k or "basic.auth" in k for k in kafka.librdkafka_config())
    assert kafka.value_format == "auto"

    # the variables, named as the other KAFKA_ ones, win over the file
    env = {
        "KAFKA_CONFIG_FILE": str(props),
        "KAFKA_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081/apis/ccompat/v7/",
        "KAFKA_SCHEMA_REGISTRY_USER_INFO": "OTHER:other-secret",
        "KAFKA_VALUE_FORMAT": "avro",
    }
    kafka = KafkaSettings.from_env(env)
    assert kafka.registry == RegistrySettings(
        "http://127.0.0.1:8081/apis/ccompat/v7", Secret("OTHER:other-secret")
    )
    assert KafkaSettings.from_env(kafka.to_env()).registry == kafka.registry

    # credentials in the URL, as basic.auth.credentials.source=URL says
    props.write_text(
        "bootstrap.servers=b:9092\nschema.registry.url=https://KEY3:s3@sr.example:8081/\n"
        "basic.auth.credentials.source=URL\n"
    )
    registry = KafkaSettings.from_env({"KAFKA_CONFIG_FILE": str(props)}).registry
    assert registry == RegistrySettings("https://sr.example:8081", Secret("KEY3:s3"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KAFKA_VALUE_FORMAT": "avro"},
            r"KAFKA_VALUE_FORMAT=avro needs a Schema Registry: set KAFKA_SCHEMA_REGISTRY_URL",
        ),
        ({"KAFKA_VALUE_FORMAT": "xml"}, r"KAFKA_VALUE_FORMAT: 'xml' is not one of auto, json"),
        (
            {"KAFKA_SCHEMA_REGISTRY_URL": "psrc-456.confluent.cloud"},
            r"KAFKA_SCHEMA_REGISTRY_URL \(schema.registry.url\) is not an http\(s\) URL",
        ),
        (
            {
                "KAFKA_SCHEMA_REGISTRY_URL": "http://h:1",
                "KAFKA_SCHEMA_REGISTRY_USER_INFO": "nocolon",
            },
            r"KAFKA_SCHEMA_REGISTRY_USER_INFO \(basic.auth.user.info\) must be KEY:SECRET",
        ),
    ],
)
def test_bad_schema_registry_settings_are_one_line(env, message):
    with pytest.raises(ConfigError, match=message) as raised:
        KafkaSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092", **env})
    assert "\n" not in str(raised.value)
    assert "nocolon" not in str(raised.value)
