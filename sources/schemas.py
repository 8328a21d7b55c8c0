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

import threading
from operator import itemgetter

from events.formats import HEADER, MAGIC, SchemaDecoder, SchemaUnusable, decoder_for
from kafka_client.schema_registry import SchemaMissing, SchemaRegistry
from kafka_client.settings import RegistrySettings

# A decoder, or why the records of that id cannot be decoded.
Decoding = SchemaDecoder | str
# A value's first bytes: Confluent's framing, when it is framed.
_HEAD = itemgetter(slice(0, HEADER))


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
            heads = set(map(_HEAD, values))  # type: ignore[arg-type]
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
