"""The writer schemas a source needs before it hands a batch on.

A batch whose values are in Confluent's framing travels with the decoder of each schema
id it holds (`RawBatch.decoders`), so parsing does no I/O. The decoders are made once
per id and process, from the registry's answer. An id the registry does not have, or a
schema we cannot read, gets the reason instead: those records become dead letters that
say so. A registry that does not answer raises `RegistryUnavailable`: the source keeps
its records and asks again, so no record is ever dead-lettered because the registry
blinked.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from events.formats import HEADER, MAGIC, SchemaDecoder, SchemaUnusable, decoder_for, head_of
from events.streams import Stream, columns_of_schema
from kafka_client.schema_registry import (
    RegistryRefused,
    RegistryUnavailable,
    SchemaMissing,
    SchemaRegistry,
)
from kafka_client.settings import KafkaSettings, RegistrySettings
from setting import ConfigError

log = logging.getLogger(__name__)

# A decoder, or why the records of that id cannot be decoded.
Decoding = SchemaDecoder | str


class WriterSchemas:
    """The decoders of the schema ids seen so far in this process."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.registry = SchemaRegistry(settings)
        self.decoders: dict[int, Decoding] = {}
        self.lock = threading.Lock()

    def for_values(self, values: list[bytes | None]) -> dict[int, Decoding]:
        """The decoding of every schema id among `values`; `RegistryUnavailable` or
        `RegistryRefused` when the registry cannot say."""
        try:  # in C: a batch holds a handful of distinct heads
            heads = set(map(head_of, values))  # type: ignore[arg-type]
        except TypeError:  # a tombstone (None) among them
            heads = {v[:HEADER] for v in values if v is not None}
        found = {}
        for head in heads:
            if len(head) < HEADER or head[0] != MAGIC:
                continue  # not framed: plain JSON or garbage, the parser's business
            schema_id = int.from_bytes(head[1:], "big")
            decoding = self.decoders.get(schema_id)
            if decoding is None:
                decoding = self._fetch(schema_id)
            found[schema_id] = decoding
        return found

    def _fetch(self, schema_id: int) -> Decoding:
        try:
            schema = self.registry.schema(schema_id)
            decoding: Decoding = decoder_for(schema_id, schema.schema_type, schema.schema_str or "")
        except SchemaMissing as ex:
            decoding = f"unknown schema id: {schema_id} is not in the Schema Registry ({ex})"
        except SchemaUnusable as ex:
            decoding = f"unreadable schema: {ex}"
        with self.lock:
            self.decoders[schema_id] = decoding
        return decoding


_shared: dict[RegistrySettings, WriterSchemas] = {}
_shared_lock = threading.Lock()


def writer_schemas(settings: RegistrySettings) -> WriterSchemas:
    """The process's `WriterSchemas` for a registry, shared by all its source partitions."""
    with _shared_lock:
        found = _shared.get(settings)
        if found is None:
            found = _shared[settings] = WriterSchemas(settings)
        return found


def with_registry_columns(
    streams: dict[str, Stream], kafka: KafkaSettings | None
) -> dict[str, Stream]:
    """`streams`, those declared without columns given the columns of the newest schema
    under `<topic>-value` in the Schema Registry (the TOPIC strategy). A `ConfigError`
    of one line, naming the declaration, when there is none to be had."""
    missing = [s for s in streams.values() if not s.columns]
    if not missing:
        return streams
    if kafka is None or kafka.registry is None:
        names = ", ".join(s.path or s.name for s in missing)
        raise ConfigError(
            f"{names}: no columns declared; they are taken from the Schema Registry, so set "
            "CLICKSTREAM_SOURCE=kafka and KAFKA_SCHEMA_REGISTRY_URL (or declare the columns)"
        )
    out = dict(streams)
    with SchemaRegistry(kafka.registry) as registry:
        for stream in missing:
            topic = kafka.topic_of(stream.name, stream.topic)
            subject = f"{topic}-value"
            where = stream.path or stream.name
            try:
                latest = registry.latest(subject)
                columns, left_out = columns_of_schema(
                    latest.schema.schema_type or "AVRO", latest.schema.schema_str or ""
                )
            except SchemaMissing:
                raise ConfigError(
                    f"{where}: no columns declared, and the Schema Registry has no schema "
                    f"under {subject} to take them from"
                ) from None
            except (RegistryRefused, RegistryUnavailable) as ex:
                raise ConfigError(
                    f"{where}: cannot read the columns of {subject} from the Schema Registry "
                    f"at {kafka.registry.url} ({ex})"
                ) from None
            except ValueError as ex:
                raise ConfigError(f"{where}: the schema under {subject}: {ex}") from None
            if not columns:
                raise ConfigError(f"{where}: the schema under {subject} has no usable column")
            log.info(
                "stream %s: columns %s from %s version %s%s",
                stream.name,
                ", ".join(f"{c.name} {c.type}" for c in columns),
                subject,
                latest.version,
                f" (left out: {', '.join(left_out)})" if left_out else "",
            )
            out[stream.name] = dataclasses.replace(stream, columns=tuple(columns))
    return out
