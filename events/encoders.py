"""Values we write in a Schema Registry format, and the schemas we write them with.

The schemas are the ones Confluent's tools write, so a topic we fill reads like theirs:
- `CLICK`: Datagen's clickstream quickstart (`status` and `bytes` are strings);
- `USER`: Datagen's clickstream users quickstart;
- `ksql_shape(columns)`: what ksqlDB makes of a declared stream such as
  `USER_CLICKSTREAM`: its fields, each one nullable, in the record
  `io.confluent.ksql.avro_schemas.KsqlDataSourceSchema`.

An encoder is made for a format and a record shape, registered by the caller (it is
I/O, see `sinks.kafka.value_encoder`), then frames each value with the schema id:

```python
encoder = ENCODERS["avro"](CLICK)
schema_id = registry.register("clickstream-value", Schema(encoder.schema_str, encoder.schema_type))
value = encoder.encode(schema_id, {"ip": "111.152.45.45", "userid": 12, ...})
```

A new format is one `SchemaEncoder` subclass, named in `ENCODERS`.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import msgspec

from events.formats import MAGIC, compile_proto


class Field(NamedTuple):
    name: str
    type: str  # "string", "int" or "long"
    nullable: bool = False


class Shape(NamedTuple):
    """A record's fields, with the name and namespace its schemas carry."""

    name: str
    namespace: str
    fields: tuple[Field, ...]


CLICK = Shape(
    "clickstream",
    "ksql",
    tuple(
        Field(name, kind)
        for name, kind in [
            ("ip", "string"),
            ("userid", "int"),
            ("remote_user", "string"),
            ("time", "string"),
            ("_time", "long"),
            ("request", "string"),
            ("status", "string"),
            ("bytes", "string"),
            ("referrer", "string"),
            ("agent", "string"),
        ]
    ),
)
USER = Shape(
    "users",
    "ksql",
    tuple(
        Field(name, kind)
        for name, kind in [
            ("user_id", "int"),
            ("username", "string"),
            ("registered_at", "long"),
            ("first_name", "string"),
            ("last_name", "string"),
            ("city", "string"),
            ("level", "string"),
        ]
    ),
)
# a declared column's type as the encoders' fields name it
_FIELD_TYPES = {"string": "string", "int": "int", "bigint": "long"}


def ksql_shape(columns: Sequence[Any]) -> Shape:
    """What ksqlDB makes of a stream with these declared columns (`events.streams.Column`):
    their names, each one nullable, in the record
    `io.confluent.ksql.avro_schemas.KsqlDataSourceSchema`. `enrich` writes
    USER_CLICKSTREAM so, from its declaration."""
    fields = []
    for c in columns:
        if c.type not in _FIELD_TYPES:
            raise ValueError(f"column {c.name}: {c.type} is not written in a registry format yet")
        fields.append(Field(c.name, _FIELD_TYPES[c.type], nullable=True))
    return Shape("KsqlDataSourceSchema", "io.confluent.ksql.avro_schemas", tuple(fields))


def _framed(schema_id: int) -> bytes:
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big")


class SchemaEncoder(ABC):
    """Encodes records of one shape in one format."""

    format: ClassVar[str]  # its name in `KAFKA_VALUE_FORMAT`
    schema_type: ClassVar[str]  # the registry's name for it

    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    @property
    @abstractmethod
    def schema_str(self) -> str:
        """The schema to register."""

    @abstractmethod
    def encode(self, schema_id: int, record: dict[str, Any]) -> bytes:
        """`record` in Confluent's framing, written with schema `schema_id`."""


class AvroEncoder(SchemaEncoder):
    format = "avro"
    schema_type = "AVRO"

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        self.schema: dict[str, Any] = {
            "type": "record",
            "name": shape.name,
            "namespace": shape.namespace,
            "fields": [
                {"name": f.name, "type": ["null", f.type], "default": None}
                if f.nullable
                else {"name": f.name, "type": f.type}
                for f in shape.fields
            ],
        }
        import fastavro  # only a run that writes Avro imports it

        self.parsed = fastavro.parse_schema(self.schema)

    @property
    def schema_str(self) -> str:
        return json.dumps(self.schema)

    def encode(self, schema_id: int, record: dict[str, Any]) -> bytes:
        import fastavro

        out = io.BytesIO()
        out.write(_framed(schema_id))
        fastavro.schemaless_writer(out, self.parsed, record)
        return out.getvalue()


_JSON_TYPES = {"string": "string", "int": "integer", "long": "integer"}


class JsonSchemaEncoder(SchemaEncoder):
    format = "json_sr"
    schema_type = "JSON"

    @property
    def schema_str(self) -> str:
        properties = {
            f.name: {"type": [_JSON_TYPES[f.type], "null"] if f.nullable else _JSON_TYPES[f.type]}
            for f in self.shape.fields
        }
        required = [f.name for f in self.shape.fields if not f.nullable]
        return json.dumps(
            {"type": "object", "title": self.shape.name, "properties": properties}
            | ({"required": required} if required else {})
        )

    def encode(self, schema_id: int, record: dict[str, Any]) -> bytes:
        return _framed(schema_id) + msgspec.json.encode(record)


_PROTO_TYPES = {"string": "string", "int": "int32", "long": "int64"}


class ProtobufEncoder(SchemaEncoder):
    format = "protobuf"
    schema_type = "PROTOBUF"

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        from google.protobuf import descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        descriptor = pool.Add(compile_proto(0, self.schema_str))
        self.message = message_factory.GetMessageClass(descriptor.message_types_by_name["Value"])

    @property
    def schema_str(self) -> str:
        lines = [
            f"  {'optional ' if f.nullable else ''}{_PROTO_TYPES[f.type]} {f.name} = {i};"
            for i, f in enumerate(self.shape.fields, start=1)
        ]
        package = self.shape.namespace
        return "\n".join(
            ['syntax = "proto3";', f"package {package};", "message Value {", *lines, "}", ""]
        )

    def encode(self, schema_id: int, record: dict[str, Any]) -> bytes:
        message = self.message(**{k: v for k, v in record.items() if v is not None})
        # b"\x00": the first message of the file (Confluent's message-index shortcut)
        return _framed(schema_id) + b"\x00" + message.SerializeToString()


ENCODERS: dict[str, type[SchemaEncoder]] = {
    "avro": AvroEncoder,
    "json_sr": JsonSchemaEncoder,
    "protobuf": ProtobufEncoder,
}
