"""Java credentials (`sasl.jaas.config`) into librdkafka settings: the login modules
people use, Java's quoting, one-line errors, and a password that never prints."""

from __future__ import annotations

import logging

import pytest

from kafka_client import jaas
from kafka_client.settings import KafkaSettings
from setting import ConfigError, Secret

PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


@pytest.mark.parametrize(
    "line",
    [
        f"{PLAIN} required username='KEY' password='p@ss;w\"ord';",
        f'{PLAIN} required username="KEY" password="p@ss;w\\"ord";',
        f"kafkashaded.{PLAIN} required username='KEY' password='p@ss;w\"ord';",
        f'{PLAIN}   required\n  username = "KEY"\n  password = \'p@ss;w\\"ord\'  ;  ',
    ],
)
def test_plain_in_every_quoting(line):
    assert jaas.translate(line, None) == {
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "KEY",
        "sasl.password": 'p@ss;w"ord',
    }


def test_scram_takes_its_mechanism_from_sasl_mechanism():
    line = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=bob password=x;"
    )
    assert jaas.translate(line, "SCRAM-SHA-512")["sasl.mechanisms"] == "SCRAM-SHA-512"
    with pytest.raises(jaas.JaasError, match=r"needs sasl\.mechanism=SCRAM-SHA-256"):
        jaas.translate(line, None)


def test_oauthbearer_maps_onto_librdkafkas_oidc():
    line = (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        "clientId='app' clientSecret='cs' scope='kafka' extension_logicalCluster='lkc-1';"
    )
    assert jaas.translate(line, "OAUTHBEARER") == {
        "sasl.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": "app",
        "sasl.oauthbearer.client.secret": "cs",
        "sasl.oauthbearer.scope": "kafka",
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-1",
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true "
            "keyTab='/k.keytab' principal='kafka@EXAMPLE.COM';",
            "Krb5LoginModule (Kerberos/GSSAPI) cannot be translated; set sasl.mechanism=GSSAPI",
        ),
        (
            "com.example.MyLoginModule required password='topsecret';",
            "login module com.example.MyLoginModule cannot be translated",
        ),
        (f"{PLAIN} username='a' password='topsecret';", "a control flag (required) is missing"),
        (f"{PLAIN} required username='a';", "PlainLoginModule needs password"),
        (f"{PLAIN} required username='a' 'topsecret';", "option 2 is not"),
        (f"{PLAIN} required username='a' password='topsecret;", "a quoted value is not closed"),
    ],
)
def test_what_cannot_be_used_is_one_line_without_the_secret(line, message):
    with pytest.raises(jaas.JaasError) as info:
        jaas.translate(line, None)
    text = str(info.value)
    assert message in text and "\n" not in text and "topsecret" not in text


def test_a_java_client_properties_file_works(tmp_path, caplog):
    props = tmp_path / "client.properties"
    props.write_text(
        "# Required connection configs for Kafka producer, consumer, and admin\n"
        "bootstrap.servers=pkc-123.europe-west1.gcp.confluent.cloud:9092\n"
        "security.protocol=SASL_SSL\n"
        f"sasl.jaas.config={PLAIN} required username='KEY' password='SECRET-from-java';\n"
        "sasl.mechanism=PLAIN\n"
        "client.dns.lookup=use_all_dns_ips\n"
        "session.timeout.ms=45000\n"
        "acks=all\n"
        "key.serializer=org.apache.kafka.common.serialization.StringSerializer\n"
        "schema.registry.url=https://psrc-1.confluent.cloud\n"
    )
    with caplog.at_level(logging.WARNING):
        kafka = KafkaSettings.from_env({"KAFKA_CONFIG_FILE": str(props)})
    conf = kafka.librdkafka_config()
    assert conf["sasl.username"] == "KEY" and conf["sasl.password"] == "SECRET-from-java"
    assert conf["sasl.mechanisms"] == "PLAIN" and "sasl.mechanism" not in conf
    assert "sasl.jaas.config" not in conf
    # what librdkafka shares is kept; Java-only settings are dropped with a warning
    assert conf["client.dns.lookup"] == "use_all_dns_ips" and conf["acks"] == "all"
    assert conf["session.timeout.ms"] == "45000"
    assert "key.serializer" not in conf and "schema.registry.url" not in conf
    assert "key.serializer is a Java client setting; ignored" in caplog.text
    assert "SECRET-from-java" not in repr(kafka) + caplog.text
    assert isinstance(kafka.properties["sasl.password"], Secret)


def test_the_notebooks_shaded_jaas_variable(caplog):
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_JAAS_CONFIG": f"kafkashaded.{PLAIN} required username='K' password='S3';",
    }
    kafka = KafkaSettings.from_env(env)
    assert kafka.librdkafka_config()["sasl.username"] == "K"
    assert "S3" not in repr(kafka)
    with pytest.raises(ConfigError) as info:
        KafkaSettings.from_env(
            {**env, "KAFKA_SASL_JAAS_CONFIG": "x.Custom required password='S3';"}
        )
    assert "S3" not in str(info.value)
