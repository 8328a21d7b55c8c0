"""How to reach a Kafka cluster: the settings Confluent users know
(`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_SASL_USERNAME`, ...), completed by a librdkafka
properties file (`KAFKA_CONFIG_FILE`), such as the `client.properties` Confluent
Cloud hands out, in its librdkafka or its Java flavour (`sasl.jaas.config`, see
`kafka_client.jaas`). Secrets are wrapped in `Secret` so they never print.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from kafka_client import jaas
from setting import ConfigError, Secret, declared, setting, to_env

# librdkafka properties whose values must never be printed.
_SECRET_PROPERTIES = frozenset(
    {
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.jaas.config",
    }
)

# client.properties lines of the Schema Registry, read into `RegistrySettings`.
_REGISTRY_PROPERTIES = frozenset(
    {
        "schema.registry.url",
        "basic.auth.credentials.source",
        "basic.auth.user.info",
        "schema.registry.basic.auth.user.info",
    }
)

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logging.getLogger(__name__).warning(message)


def _parse_properties(text: str, origin: str) -> dict[str, str]:
    """Parse a Java-style properties file (`key=value`, `#` comments)."""
    props: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise ConfigError(f"{origin}:{number}: expected key=value, got {line[:40]!r}")
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


# What a record's value may be (`KAFKA_VALUE_FORMAT`): plain JSON, or one of Schema
# Registry's formats in Confluent's framing; `auto` tells per record.
VALUE_FORMATS = ("auto", "json", "avro", "json_sr", "protobuf")


@dataclass(frozen=True)
class RegistrySettings:
    """A Confluent Schema Registry (Confluent Cloud's, Confluent Platform's, Apicurio's
    `ccompat` API): its URL and, for Confluent Cloud, an API key as `KEY:SECRET`."""

    url: str
    user_info: Secret | None = None
    # Every request gets an answer or an error within this: the client's own default is
    # to wait for ever.
    timeout_s: float = 10.0

    def client_config(self) -> dict[str, object]:
        """The config of confluent-kafka's `SchemaRegistryClient`, secret revealed."""
        conf: dict[str, object] = {"url": self.url, "timeout": self.timeout_s, "max.retries": 0}
        if self.user_info is not None:  # the Python client takes no credentials.source
            conf["basic.auth.user.info"] = self.user_info.get()
        return conf

    @classmethod
    def from_env(
        cls, props: MutableMapping[str, str | Secret], env: Mapping[str, str]
    ) -> RegistrySettings | None:
        """From `KAFKA_SCHEMA_REGISTRY_URL` / `_USER_INFO`, or a `client.properties`'
        `schema.registry.url`, `basic.auth.credentials.source` and `basic.auth.user.info`
        (taken out of `props`); the variables win. None: no registry."""
        url = env.get("KAFKA_SCHEMA_REGISTRY_URL") or str(props.pop("schema.registry.url", ""))
        props.pop("schema.registry.url", None)
        source = str(props.pop("basic.auth.credentials.source", "USER_INFO")).upper()
        info = props.pop("basic.auth.user.info", None) or props.pop(
            "schema.registry.basic.auth.user.info", None
        )
        props.pop("schema.registry.basic.auth.user.info", None)
        if env.get("KAFKA_SCHEMA_REGISTRY_USER_INFO"):
            info, source = Secret(env["KAFKA_SCHEMA_REGISTRY_USER_INFO"]), "USER_INFO"
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # the URL may hold credentials (basic.auth.credentials.source=URL): not shown
            raise ConfigError(
                "KAFKA_SCHEMA_REGISTRY_URL (schema.registry.url) is not an http(s) URL"
            )
        if source == "URL" and parts.username:
            info = Secret(f"{parts.username}:{parts.password or ''}")
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            url = parts._replace(netloc=netloc).geturl()
        elif source not in ("USER_INFO", "URL"):
            raise ConfigError(f"basic.auth.credentials.source: {source!r} is not USER_INFO or URL")
        if info is not None:
            text = info.get() if isinstance(info, Secret) else info
            if ":" not in text:
                raise ConfigError(
                    "KAFKA_SCHEMA_REGISTRY_USER_INFO (basic.auth.user.info) must be KEY:SECRET"
                )
            info = Secret(text)
        return cls(url.rstrip("/"), info)


# the settings that move a repo stream to another topic
_STREAM_TOPICS = {
    "clickstream": ("clickstream_topic",),
    "user_clickstream": ("user_clickstream_topic",),
    "clickstream_users": ("users_topic",),
}


@dataclass(frozen=True)
class KafkaSettings:
    """Connection to a Kafka cluster (Apache Kafka, Confluent Cloud, Redpanda)."""

    bootstrap_servers: str
    # Everything else librdkafka should get, secrets included (wrapped).
    properties: Mapping[str, str | Secret] = field(default_factory=dict)
    # Where Schema Registry formats find their writer schemas; None: none set.
    registry: RegistrySettings | None = None
    # The rest is declared once each (see `config.setting`).
    clickstream_topic: str = setting(
        "CLICKSTREAM_TOPIC", "clickstream", "the clicks topic (the topic of stream `clickstream`)"
    )
    user_clickstream_topic: str = setting(
        "USER_CLICKSTREAM_TOPIC",
        "USER_CLICKSTREAM",
        "the clicks joined with their users (the topic of stream `user_clickstream`)",
    )
    users_topic: str = setting(
        "CLICKSTREAM_USERS_TOPIC",
        "clickstream_users",
        "the users topic, compacted (the topic of stream `clickstream_users`)",
    )
    stop_at_end: bool = setting(
        "KAFKA_STOP_AT_END",
        False,
        "`true`: read every partition to its end offset at start, flush all windows, exit 0 "
        "(a backfill)",
    )
    group_id: str | None = setting(
        "KAFKA_GROUP_ID",
        None,
        "the consumer group offsets are committed to, for Kafka's lag tools only (reads "
        "start where the recovery store says); unset: `clickstream-<dataflow>`",
    )
    partition_discovery_s: float = setting(
        "CLICKSTREAM_PARTITION_DISCOVERY_INTERVAL",
        30.0,
        "how often a live run looks for partitions added to its topics; 0: never",
        0,
    )
    value_format: str = setting(
        "KAFKA_VALUE_FORMAT",
        "auto",
        "what record values are: `json`; `avro`, `json_sr` or `protobuf` through the Schema "
        "Registry (Confluent's framing); `auto` tells per record. Also the format `enrich` "
        "and `just produce` write (`auto`: JSON)",
    )
    fail_on_data_loss: bool = setting(
        "CLICKSTREAM_FAIL_ON_DATA_LOSS",
        True,
        "offsets deleted (retention) before they were read stop the run with one line; "
        "`false`: counted, logged, one dead letter per gap, reading goes on",
    )

    def topic_of(self, stream: str, declared: str) -> str:
        """The topic of `stream`, declared as `declared`: `CLICKSTREAM_TOPIC`,
        `USER_CLICKSTREAM_TOPIC` and `CLICKSTREAM_USERS_TOPIC` move the repo's streams
        (when set to other than their defaults, which are the declared topics); any other
        stream reads its own."""
        for f in fields(self):
            if f.name in _STREAM_TOPICS.get(stream, ()) and getattr(self, f.name) != f.default:
                return str(getattr(self, f.name))
        return declared

    def librdkafka_config(self) -> dict[str, str]:
        """The config dict for confluent-kafka clients, secrets revealed."""
        conf = {"bootstrap.servers": self.bootstrap_servers}
        for key, value in self.properties.items():
            conf[key] = value.get() if isinstance(value, Secret) else value
        return conf

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSettings:
        props: dict[str, str | Secret] = {}
        config_file = env.get("KAFKA_CONFIG_FILE")
        if config_file:
            path = Path(config_file)
            try:
                text = path.read_text()
            except OSError as ex:
                raise ConfigError(f"KAFKA_CONFIG_FILE: cannot read {path}: {ex.strerror}") from None
            for key, value in _parse_properties(text, str(path)).items():
                if key in _REGISTRY_PROPERTIES:
                    props[key] = Secret(value) if "user.info" in key else value
                    continue
                if jaas.is_java_only(key):
                    _warn_once(f"KAFKA_CONFIG_FILE: {key} is a Java client setting; ignored")
                    continue
                props[key] = Secret(value) if key in _SECRET_PROPERTIES else value
        # Java's singular name; librdkafka's is sasl.mechanisms
        if "sasl.mechanism" in props:
            props.setdefault("sasl.mechanisms", props.pop("sasl.mechanism"))
        # the variable wins over the file's line, which librdkafka must not see either way
        from_file = props.pop("sasl.jaas.config", None)
        jaas_config = env.get("KAFKA_SASL_JAAS_CONFIG") or from_file
        if jaas_config:
            mechanism = env.get("KAFKA_SASL_MECHANISM") or props.get("sasl.mechanisms")
            try:
                translated = jaas.translate(
                    jaas_config.get() if isinstance(jaas_config, Secret) else jaas_config,
                    str(mechanism) if mechanism else None,
                )
            except jaas.JaasError as ex:
                raise ConfigError(str(ex)) from None
            for key, value in translated.items():
                props[key] = Secret(value) if key in _SECRET_PROPERTIES else value
        registry = RegistrySettings.from_env(props, env)
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or str(props.pop("bootstrap.servers", ""))
        props.pop("bootstrap.servers", None)
        if not bootstrap:
            raise ConfigError(
                "CLICKSTREAM_SOURCE=kafka needs KAFKA_BOOTSTRAP_SERVERS "
                "(or bootstrap.servers in KAFKA_CONFIG_FILE)"
            )
        for var, prop in (
            ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
            ("KAFKA_SASL_MECHANISM", "sasl.mechanisms"),
            ("KAFKA_SASL_USERNAME", "sasl.username"),
        ):
            if env.get(var):
                props[prop] = env[var]
        if env.get("KAFKA_SASL_PASSWORD"):
            props["sasl.password"] = Secret(env["KAFKA_SASL_PASSWORD"])
        protocol = str(props.get("security.protocol", "PLAINTEXT")).upper()
        if protocol not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of "
                "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            )
        if protocol.startswith("SASL") and "sasl.username" not in props:
            mech = str(props.get("sasl.mechanisms", "PLAIN")).upper()
            if mech in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}:
                raise ConfigError(
                    f"security.protocol={protocol} with {mech} needs KAFKA_SASL_USERNAME "
                    "and KAFKA_SASL_PASSWORD"
                )
        values = declared(cls, env)
        if values["value_format"] not in VALUE_FORMATS:
            raise ConfigError(
                f"KAFKA_VALUE_FORMAT: {values['value_format']!r} is not one of "
                + ", ".join(VALUE_FORMATS)
            )
        if values["value_format"] in ("avro", "json_sr", "protobuf") and registry is None:
            raise ConfigError(
                f"KAFKA_VALUE_FORMAT={values['value_format']} needs a Schema Registry: set "
                "KAFKA_SCHEMA_REGISTRY_URL (or schema.registry.url in KAFKA_CONFIG_FILE)"
            )
        return cls(bootstrap_servers=bootstrap, properties=props, registry=registry, **values)

    def to_env(self) -> dict[str, str]:
        """The variables that give these settings back: KAFKA_BOOTSTRAP_SERVERS and every
        declared one (for tests and child processes). `properties` are not among them:
        pass those as KAFKA_CONFIG_FILE."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, **to_env(self)}
        if self.registry is not None:
            env["KAFKA_SCHEMA_REGISTRY_URL"] = self.registry.url
            if self.registry.user_info is not None:
                env["KAFKA_SCHEMA_REGISTRY_USER_INFO"] = self.registry.user_info.get()
        return env

    def group(self, dataflow: str) -> str:
        """The consumer group a dataflow commits its offsets to."""
        return self.group_id or f"clickstream-{dataflow}"
