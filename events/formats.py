"""Record values in Schema Registry formats: Confluent's framing, one decoder per format.

Confluent's wire format is byte 0, the writer schema's id (4 bytes, big-endian), then
the payload: Avro binary, JSON (JSON Schema), or for Protobuf the message's index path
(varints) and the message. A decoder is built once per writer schema (`decoder_for`)
and turns payloads into plain dicts of the record's fields, which the parser converts
into the event type as it does JSON: the same names, the same casts, the same nulls.
Nothing here does I/O: the source fetches each writer schema once (see
`kafka_client.schema_registry`) and hands the decoders over with the batch.

```python
decoder = decoder_for(3, "AVRO", schema_str)
decoder.records([value])     # [{"ip": "111.152.45.45", "userid": 12, ...}]
```

A new format is one `SchemaDecoder` subclass, named in `DECODERS`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from abc import ABC, abstractmethod
from operator import itemgetter
from typing import Any, ClassVar, TypeVar

import msgspec

# fastavro and clickstream_native are imported by the Avro decoder when a run meets Avro: a
# JSON run pays for neither (tests/test_startup.py).

MAGIC = 0
HEADER = 5
# A value's first bytes: Confluent's framing, when it is framed (`head_of(value)`).
head_of = itemgetter(slice(0, HEADER))

E = TypeVar("E")


def framed_id(value: Any) -> int | None:
    """The schema id of a value in Confluent's framing, or None.

    ```python
    framed_id(b"\\x00\\x00\\x00\\x00\\x07...")   # 7
    framed_id(b'{"ip": ...}')                   # None
    ```
    """
    if isinstance(value, bytes) and len(value) >= HEADER and value[0] == MAGIC:
        return int.from_bytes(value[1:HEADER], "big")
    return None


class SchemaUnusable(ValueError):
    """A writer schema we cannot decode with; the message says why (a dead letter's reason)."""


class SchemaDecoder(ABC):
    """Decodes the values written with one writer schema."""

    # the name of the format in `KAFKA_VALUE_FORMAT`
    format: ClassVar[str]

    def __init__(self, schema_id: int, schema_str: str) -> None:
        self.schema_id = schema_id
        # the framing of every value written with this schema
        self.head = bytes([MAGIC]) + schema_id.to_bytes(4, "big")

    def _check_framed(self, values: list[bytes]) -> None:
        """Every value is framed with this schema's id (a None, a tombstone, raises too)."""
        if set(map(head_of, values)) != {self.head}:
            raise ValueError(f"not all of schema id {self.schema_id}")

    @abstractmethod
    def record(self, value: bytes) -> Any:
        """The fields of one framed value, as a dict; raises ValueError when it does not
        decode."""

    def records(self, values: list[bytes]) -> list[Any]:
        return [self.record(v) for v in values]

    def events(self, values: list[bytes], shape: type[E]) -> list[E]:
        """Every value as an event of `shape` at once (the fast path of a batch written
        with this schema); raises when some value needs a closer look, which `record`
        and the parser give, one by one."""
        self._check_framed(values)
        return msgspec.convert(self.records(values), list[shape], strict=False)  # type: ignore[valid-type]


# Avro types the batch path reads (in Rust, `clickstream_native.avro_to_msgpack`), each with
# its code there: the types the clickstream's schemas use. Floats, bytes, logical types,
# enums, arrays, maps and nested records are not (yet) there: a schema with any of them is
# read record by record, with fastavro.
_BATCH_TYPES = {"null": 0, "boolean": 1, "int": 2, "long": 3, "string": 4}

# A writer field as `avro_to_msgpack` takes it: whether it is a union, the codes of its
# branches, and its name (UTF-8) when the events have it, else None (read past).
_Field = tuple[bool, bytes, bytes | None]


def _batch_fields(schema: Any) -> list[tuple[str, bool, bytes]] | None:
    """A flat record's fields (name, union, branch codes) when every field is one of
    `_BATCH_TYPES` or a union of them; else None."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields = []
    for f in schema["fields"]:
        union = isinstance(f["type"], list)
        kinds = f["type"] if union else [f["type"]]
        if not all(isinstance(k, str) and k in _BATCH_TYPES for k in kinds):
            return None
        fields.append((f["name"], union, bytes(_BATCH_TYPES[k] for k in kinds)))
    return fields


class AvroDecoder(SchemaDecoder):
    """Avro binary, read with the writer's schema. The fields are the writer's: a field
    added by a newer schema is there, a dropped one is missing, so the parser says which
    one a table needed.

    One record: fastavro, the reference. A batch: `clickstream_native.avro_to_msgpack`
    (Rust) turns every value into a MessagePack map of the fields the events have, and
    msgspec makes the events of them with the casts it makes from JSON. It checks what
    fastavro would: each value carries this schema's framing, and its record ends where
    the value does; a value that does not is read one by one. Only flat records of
    `_BATCH_TYPES` take it (`tests/events/test_native.py` compares both ways on random
    schemas and records). 0.75 -> 0.35-0.40 µs a record against the Polars reader this
    replaced (docs/performance.md)."""

    format = "avro"

    def __init__(self, schema_id: int, schema_str: str) -> None:
        import fastavro

        super().__init__(schema_id, schema_str)
        try:
            parsed = json.loads(schema_str)
            self.schema = fastavro.parse_schema(parsed)
        except Exception as ex:
            raise SchemaUnusable(f"Avro schema id {schema_id} does not parse: {ex}") from None
        self.fields = _batch_fields(parsed)
        # per event type: the writer's fields as `avro_to_msgpack` takes them, and the decoder
        self.plans: dict[type, tuple[list[_Field], msgspec.msgpack.Decoder]] = {}

    def record(self, value: bytes) -> Any:
        import fastavro

        buffer = io.BytesIO(value)
        buffer.seek(HEADER)
        try:
            found = fastavro.schemaless_reader(buffer, self.schema, None)
        except Exception as ex:  # fastavro raises EOFError, ValueError, IndexError...
            raise ValueError(f"not Avro: schema id {self.schema_id}: {ex!r}") from None
        if buffer.tell() != len(value):
            raise ValueError(
                f"not Avro: schema id {self.schema_id}: "
                f"{len(value) - buffer.tell()} bytes left over"
            )
        return found

    def events(self, values: list[bytes], shape: type[E]) -> list[E]:
        if self.fields is None:
            return super().events(values, shape)
        from clickstream_native import avro_to_msgpack

        plan = self.plans.get(shape)
        if plan is None:
            wanted = {f.encode_name for f in msgspec.structs.fields(shape)}  # type: ignore[arg-type]
            fields = [
                (union, kinds, name.encode() if name in wanted else None)
                for name, union, kinds in self.fields
            ]
            decoder = msgspec.msgpack.Decoder(list[shape], strict=False)  # type: ignore[valid-type]
            plan = self.plans[shape] = (fields, decoder)
        fields, decoder = plan
        found = avro_to_msgpack(values, self.head, fields)
        if found is None:
            raise ValueError(f"not every value is a record of schema id {self.schema_id}")
        return decoder.decode(found)


class JsonSchemaDecoder(SchemaDecoder):
    """JSON Schema: the payload after the framing is plain JSON."""

    format = "json_sr"

    def __init__(self, schema_id: int, schema_str: str) -> None:
        super().__init__(schema_id, schema_str)
        self.typed: dict[type, msgspec.json.Decoder] = {}

    def events(self, values: list[bytes], shape: type[E]) -> list[E]:
        found = self.typed.get(shape)
        if found is None:
            found = self.typed[shape] = msgspec.json.Decoder(shape, strict=False)
        self._check_framed(values)
        decode = found.decode
        return [decode(memoryview(v)[HEADER:]) for v in values]

    def record(self, value: bytes) -> Any:
        try:
            return msgspec.json.decode(memoryview(value)[HEADER:])
        except msgspec.DecodeError as ex:
            raise ValueError(f"not JSON: {ex}") from None


class ProtobufDecoder(SchemaDecoder):
    """Protobuf, with the message type built from the registry's descriptor at run time
    (no generated code). Confluent's registry serves the schema as a serialized
    `FileDescriptorProto` (`format=serialized`); a registry that serves only `.proto`
    text (Apicurio) is compiled with grpcio-tools' protoc."""

    format = "protobuf"

    def __init__(self, schema_id: int, schema_str: str) -> None:
        super().__init__(schema_id, schema_str)
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        proto = _file_descriptor(schema_id, schema_str, descriptor_pb2)
        pool = descriptor_pool.DescriptorPool()
        try:
            self.file = pool.Add(proto)
        except Exception as ex:
            raise SchemaUnusable(f"Protobuf schema id {schema_id}: {ex}") from None
        self.messages = list(self.file.message_types_by_name.values())
        if not self.messages:
            raise SchemaUnusable(f"Protobuf schema id {schema_id} defines no message")
        self.classes: dict[tuple[int, ...], Any] = {}
        self.factory = message_factory

    def _class(self, path: tuple[int, ...]) -> Any:
        found = self.classes.get(path)
        if found is None:
            descriptor = self.messages[path[0]]
            for index in path[1:]:
                descriptor = descriptor.nested_types[index]
            found = self.classes[path] = self.factory.GetMessageClass(descriptor)
        return found

    def record(self, value: bytes) -> Any:
        try:
            path, start = _message_path(value, HEADER)
            message = self._class(path).FromString(value[start:])
        except Exception as ex:
            raise ValueError(f"not Protobuf: schema id {self.schema_id}: {ex!r}") from None
        fields = {f.name: v for f, v in message.ListFields()}
        # proto3 scalars that are not set read as their default, as protobuf's JSON does
        for f in message.DESCRIPTOR.fields:
            if f.name not in fields and not f.has_presence:
                fields[f.name] = f.default_value
        return fields


def _file_descriptor(schema_id: int, schema_str: str, descriptor_pb2: Any) -> Any:
    try:  # Confluent's registry, asked for format=serialized: a FileDescriptorProto
        return descriptor_pb2.FileDescriptorProto.FromString(
            base64.b64decode(schema_str, validate=True)
        )
    except (binascii.Error, ValueError, Exception):
        return compile_proto(schema_id, schema_str)  # .proto text (Apicurio)


def compile_proto(schema_id: int, text: str) -> Any:
    """The `FileDescriptorProto` of a `.proto` file's text, compiled by protoc (the one
    in grpcio-tools, run in this process)."""
    import tempfile
    from pathlib import Path

    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "schema.proto").write_text(text)
        out = Path(tmp, "schema.pb")
        code = protoc.main(["protoc", f"-I{tmp}", f"--descriptor_set_out={out}", "schema.proto"])
        if code != 0:
            raise SchemaUnusable(f"Protobuf schema id {schema_id} does not compile")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[-1]


def _varint(value: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = value[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), i  # zigzag
        shift += 7


def _message_path(value: bytes, i: int) -> tuple[tuple[int, ...], int]:
    """Confluent's message indexes: a count, then each index (zigzag varints); a lone 0
    is the first message of the file."""
    count, i = _varint(value, i)
    if count == 0:
        return (0,), i
    path = []
    for _ in range(count):
        index, i = _varint(value, i)
        path.append(index)
    return tuple(path), i


DECODERS: dict[str, type[SchemaDecoder]] = {
    "AVRO": AvroDecoder,
    "JSON": JsonSchemaDecoder,
    "PROTOBUF": ProtobufDecoder,
}


def decoder_for(schema_id: int, schema_type: str | None, schema_str: str) -> SchemaDecoder:
    """The decoder of a writer schema (`schema_type` as the registry says it; None is
    Avro, as in Confluent's API)."""
    kind = (schema_type or "AVRO").upper()
    if kind not in DECODERS:
        raise SchemaUnusable(f"schema id {schema_id} is of type {kind}, which we cannot read")
    return DECODERS[kind](schema_id, schema_str)
