"""Asking a Schema Registry: writer schemas by id, the check before a run, and
registering the schema of a topic we write.

confluent-kafka's `SchemaRegistryClient` does the HTTP, with a timeout (its default is
none) and no retries of its own: a registry that does not answer is waited for by the
caller, which knows whether it may block (a source keeps its records and polls again).
Schemas are looked up by id, never through a subject strategy: since 2.14 the default
strategy first asks an associations endpoint that Apicurio answers with a 404.

```python
with SchemaRegistry(kafka.registry) as registry:
    schema = registry.schema(3)           # Schema(schema_str, schema_type, references)
```
"""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kafka_client.settings import RegistrySettings
from setting import ConfigError, Unreachable

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import Schema

# confluent_kafka.schema_registry costs 0.34 s of imports (authlib's httpx client): it is
# imported where a registry is used, never by a run without one.

log = logging.getLogger(__name__)
# The client's HTTP library logs every request at INFO: one line per schema lookup.
for _name in ("httpx", "httpx2", "httpcore", "httpcore2"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class RegistryUnavailable(Exception):
    """The registry did not answer, or answered 5xx: waiting may help."""


class RegistryRefused(Exception):
    """401 or 403: the credentials are wrong or lack the permission. Waiting will not help."""


class SchemaMissing(Exception):
    """The registry has no schema with this id (404)."""


def _describe(ex: Exception) -> str:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(ex, SchemaRegistryError):
        status = ex.http_status_code
        message = str(ex.error_message)
        if message.startswith("Unknown Schema Registry Error") or not message:
            try:  # no JSON error body: the status says it
                message = HTTPStatus(status).phrase
            except ValueError:
                message = "no error message"
        return f"HTTP {status}: {message}"
    return f"{type(ex).__name__}: {ex}".split("\n")[0]


class SchemaRegistry:
    """One registry client, and the writer schemas it gave, kept for the process: a
    schema id never changes what it stands for, so each is asked once."""

    def __init__(self, settings: RegistrySettings) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.settings = settings
        self.client = SchemaRegistryClient(settings.client_config())
        self.schemas: dict[int, Schema] = {}
        self.lock = threading.Lock()

    def schema(self, schema_id: int) -> Schema:
        """The writer schema `schema_id`, or `SchemaMissing`, `RegistryRefused`,
        `RegistryUnavailable`."""
        found = self.schemas.get(schema_id)
        if found is not None:
            return found
        with self.lock:
            found = self.schemas.get(schema_id)
            if found is None:
                found = self._call(self.client.get_schema, schema_id)
                self.schemas[schema_id] = found
        return found

    def latest(self, subject: str) -> Any:
        """The newest version registered under `subject` (a `RegisteredSchema`)."""
        return self._call(self.client.get_latest_version, subject)

    def register(self, subject: str, schema: Schema) -> int:
        """Register `schema` under `subject` (a no-op when it is there); its id."""
        return self._call(self.client.register_schema, subject, schema)

    def check(self) -> None:
        """One request that needs the credentials: `GET /subjects`."""
        self._call(self.client.get_subjects)

    def _call(self, call: Any, *args: Any) -> Any:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return call(*args)
        except SchemaRegistryError as ex:
            status = ex.http_status_code
            if status == 404:
                raise SchemaMissing(_describe(ex)) from None
            if status in (401, 403):
                raise RegistryRefused(_describe(ex)) from None
            if status is not None and 400 <= status < 500:
                raise  # a request we got wrong: a bug, not the weather
            raise RegistryUnavailable(_describe(ex)) from None
        except (OSError, RuntimeError, ValueError) as ex:
            # httpx's transport errors (timeouts, refused connections) are OSError or
            # RuntimeError subclasses, depending on the version
            raise RegistryUnavailable(_describe(ex)) from None
        except Exception as ex:
            if type(ex).__module__.startswith(("httpx", "httpcore")):
                raise RegistryUnavailable(_describe(ex)) from None
            raise

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, ex: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def register_value_schema(
    settings: RegistrySettings, topic: str, schema_type: str, schema_str: str
) -> int:
    """Register the schema of the values we write to `topic` under `<topic>-value` (the
    TOPIC strategy, as ksqlDB and Datagen do); its id. A `ConfigError` of one line when the
    registry refuses it (credentials, an incompatible schema) or does not answer."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    subject = f"{topic}-value"
    with SchemaRegistry(settings) as registry:
        try:
            return registry.register(subject, Schema(schema_str, schema_type))
        except (RegistryRefused, RegistryUnavailable, SchemaMissing) as ex:
            raise ConfigError(
                f"Schema Registry at {settings.url}: cannot register {subject} ({ex})"
            ) from None
        except SchemaRegistryError as ex:
            raise ConfigError(
                f"Schema Registry at {settings.url} refused the schema of {subject} "
                f"({_describe(ex)})"
            ) from None


def check_registry(settings: RegistrySettings, retry_s: float) -> None:
    """Before a run: the registry answers and takes the credentials. A `ConfigError` of one
    line otherwise: at once for a refusal, after `retry_s` of retries when it does not
    answer (the storage outages' retry time)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    deadline = time.monotonic() + retry_s
    with SchemaRegistry(settings) as registry:
        while True:
            try:
                registry.check()
                return
            except RegistryRefused as ex:
                raise ConfigError(
                    f"Schema Registry at {settings.url} refused the credentials ({ex}): "
                    "check KAFKA_SCHEMA_REGISTRY_USER_INFO (basic.auth.user.info)"
                ) from None
            except SchemaMissing:
                raise ConfigError(
                    f"KAFKA_SCHEMA_REGISTRY_URL {settings.url} is not a Schema Registry "
                    "(GET /subjects: HTTP 404); Apicurio's is at /apis/ccompat/v7"
                ) from None
            except RegistryUnavailable as ex:
                if time.monotonic() >= deadline:
                    raise Unreachable(
                        f"cannot reach the Schema Registry at {settings.url} ({ex}) "
                        f"within {retry_s:.0f} s (CLICKSTREAM_STORAGE_RETRY_TIMEOUT)"
                    ) from None
                log.warning("schema registry %s: %s; retrying", settings.url, ex)
                time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
            except SchemaRegistryError as ex:
                raise ConfigError(
                    f"KAFKA_SCHEMA_REGISTRY_URL {settings.url}: {_describe(ex)}"
                ) from None
