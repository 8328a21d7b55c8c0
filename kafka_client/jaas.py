"""Kafka credentials in Java form (`sasl.jaas.config`), translated for librdkafka.

Spark notebooks (`kafka.sasl.jaas.config`) and Confluent Cloud's Java
`client.properties` carry credentials as a JAAS line, which librdkafka refuses:

    org.apache.kafka.common.security.plain.PlainLoginModule required
        username='KEY' password='SECRET';

`translate` turns it into librdkafka settings (`sasl.username`, `sasl.password`, or
the OIDC settings of OAUTHBEARER; `config` keeps the secret ones in a `Secret`),
for the login modules people use:
PLAIN (also Databricks' shaded `kafkashaded.org.apache...` form), SCRAM and
OAUTHBEARER. Quoting follows Java's JAAS parser: single or double quotes,
backslash escapes, a trailing `;`. Anything else is one `JaasError` line that
names the module and what to set instead, and never shows the secret.

```python
translate("org.apache.kafka.common.security.plain.PlainLoginModule required "
          "username='alice' password='s3cret';", mechanism=None)
# {"sasl.mechanisms": "PLAIN", "sasl.username": "alice", "sasl.password": "s3cret"}
```
"""

from __future__ import annotations

import re


class JaasError(ValueError):
    """A `sasl.jaas.config` that cannot be used; the message is one line, without secrets."""


_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
_OAUTH = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
_FLAGS = {"required", "requisite", "sufficient", "optional"}

# Java client properties librdkafka does not know: dropped with one warning each.
# (Serializers, Schema Registry, JVM callback classes and key stores.)
JAVA_ONLY = frozenset(
    {
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
        "schema.registry.url",
        "basic.auth.credentials.source",
        "basic.auth.user.info",
        "schema.registry.basic.auth.user.info",
        "default.api.timeout.ms",
        "max.poll.records",
        "interceptor.classes",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.type",
        "ssl.keystore.type",
        "ssl.protocol",
        "sasl.login.callback.handler.class",
        "sasl.client.callback.handler.class",
        "sasl.login.class",
        "sasl.oauthbearer.jwks.endpoint.url",
        "partitioner.class",
        "use.latest.version",
        "auto.register.schemas",
    }
)


def is_java_only(key: str) -> bool:
    return (
        key in JAVA_ONLY
        or key.endswith((".class", ".classes"))
        or key.startswith(("schema.registry.", "basic.auth."))
    )


def _tokens(text: str) -> list[str]:
    """Split a JAAS entry into words, `=`, and quoted strings (quotes removed)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "=;":
            out.append(c)
            i += 1
        elif c in "'\"":
            quote, i, value = c, i + 1, []
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            if i >= n:
                raise JaasError("sasl.jaas.config: a quoted value is not closed")
            out.append("\0" + "".join(value))  # \0 marks a quoted string
            i += 1
        else:
            m = re.compile(r"[^\s=;'\"]+").match(text, i)
            assert m is not None
            out.append(m.group())
            i = m.end()
    return out


def parse(text: str) -> tuple[str, dict[str, str]]:
    """The login module and its options of a one-entry JAAS config."""
    tokens = _tokens(text.strip())
    if not tokens:
        raise JaasError("sasl.jaas.config: empty")
    module = tokens[0].lstrip("\0")
    if len(tokens) < 2 or tokens[1].lower() not in _FLAGS:
        raise JaasError(
            f"sasl.jaas.config: expected '{module} required key=value ...;', "
            "a control flag (required) is missing"
        )
    options: dict[str, str] = {}
    rest = tokens[2:]
    while rest and rest[0] != ";":
        if len(rest) < 3 or rest[1] != "=":
            # the text is not echoed: it may hold the password
            raise JaasError(
                f"sasl.jaas.config: expected key=value pairs after {module} required, "
                f"option {len(options) + 1} is not"
            )
        options[rest[0].lstrip("\0")] = rest[2].lstrip("\0")
        rest = rest[3:]
    if rest[1:]:
        raise JaasError("sasl.jaas.config: holds more than one login module; give one")
    return module, options


def translate(text: str, mechanism: str | None) -> dict[str, str]:
    """librdkafka settings for a `sasl.jaas.config` value; `mechanism` is `sasl.mechanism`."""
    module, options = parse(text)
    name = module.removeprefix("kafkashaded.")
    mech = (mechanism or "").upper()
    short = name.rsplit(".", 1)[-1]
    if name in (_PLAIN, _SCRAM):
        missing = [k for k in ("username", "password") if k not in options]
        if missing:
            raise JaasError(f"sasl.jaas.config: {short} needs {' and '.join(missing)}")
        if name == _PLAIN:
            mech = mech or "PLAIN"
        elif mech not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise JaasError(
                "sasl.jaas.config: ScramLoginModule needs sasl.mechanism=SCRAM-SHA-256 "
                "or SCRAM-SHA-512 (KAFKA_SASL_MECHANISM)"
            )
        return {
            "sasl.mechanisms": mech,
            "sasl.username": options["username"],
            "sasl.password": options["password"],
        }
    if name == _OAUTH:
        if "unsecuredLoginStringClaim_sub" in options:  # test setups: an unsigned token
            return {
                "sasl.mechanisms": "OAUTHBEARER",
                "enable.sasl.oauthbearer.unsecure.jwt": "true",
                "sasl.oauthbearer.config": f"principal={options['unsecuredLoginStringClaim_sub']}",
            }
        if "clientId" not in options or "clientSecret" not in options:
            raise JaasError(
                "sasl.jaas.config: OAuthBearerLoginModule needs clientId and clientSecret "
                "(OIDC client credentials), or set librdkafka's sasl.oauthbearer.* settings"
            )
        out = {
            "sasl.mechanisms": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": options["clientId"],
            "sasl.oauthbearer.client.secret": options["clientSecret"],
        }
        if "scope" in options:
            out["sasl.oauthbearer.scope"] = options["scope"]
        extensions = [
            f"{k.removeprefix('extension_')}={v}"
            for k, v in options.items()
            if k.startswith("extension_")
        ]
        if extensions:
            out["sasl.oauthbearer.extensions"] = ",".join(extensions)
        return out
    if "Krb5LoginModule" in name:
        raise JaasError(
            "sasl.jaas.config: Krb5LoginModule (Kerberos/GSSAPI) cannot be translated; set "
            "sasl.mechanism=GSSAPI with librdkafka's sasl.kerberos.keytab and "
            "sasl.kerberos.principal in KAFKA_CONFIG_FILE instead"
        )
    raise JaasError(
        f"sasl.jaas.config: login module {module} cannot be translated for librdkafka; "
        "set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or sasl.username and "
        "sasl.password in KAFKA_CONFIG_FILE) instead"
    )
