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
import os
import random
import threading
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from operator import itemgetter
from typing import Any, ClassVar, NamedTuple, TypeVar

import msgspec

# fastavro and polars are imported by the Avro decoder when a run meets Avro: a JSON run
# pays for neither (tests/test_startup.py).

MAGIC = 0
HEADER = 5
# the fields an Avro batch's block adds around each record (see AvroDecoder)
_HEAD_FIELD = "__clickstream_framing"
_MARK = "__clickstream_end_of_record"
# A value's first bytes: Confluent's framing, when it is framed.
_HEAD = itemgetter(slice(0, HEADER))

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
        if set(map(_HEAD, values)) != {self.head}:
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


# Avro types the batch path reads exactly as fastavro does (Polars' reader, then JSON):
# no floats (NaN has no JSON), no logical types, enums, arrays, maps or nested records.
_BATCH_TYPES = {"null", "boolean", "int", "long", "string"}


def _batch_readable(schema: Any) -> bool:
    """A record whose every field is one of `_BATCH_TYPES`, or a union of them."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return False
    for f in schema["fields"]:
        kinds = f["type"] if isinstance(f["type"], list) else [f["type"]]
        if not all(isinstance(k, str) and k in _BATCH_TYPES for k in kinds):
            return False
    return True


def _long(n: int) -> bytes:
    """An Avro long: zigzag, then a base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class AvroDecoder(SchemaDecoder):
    """Avro binary, read with the writer's schema. The fields are the writer's: a field
    added by a newer schema is there, a dropped one is missing, so the parser says which
    one a table needed.

    One record: fastavro. A batch: its values laid end to end as one block of an Avro
    container file in memory, read by Polars (in Rust) and handed to msgspec as JSON,
    several times faster than fastavro's reader (`just bench`, `formats`). The block's
    schema is the writer's with two fields added: the framing in front, as a `fixed(5)`
    (so the values go in as they are, and every one is checked to carry this id), and a
    marker after the fields (a long: a random base plus the record's place). Records in
    a block have no boundaries: a record longer or shorter than its schema says shifts
    every marker after it, and the batch is then read one by one instead. Only schemas of
    flat records of `_BATCH_TYPES` take it."""

    format = "avro"

    def __init__(self, schema_id: int, schema_str: str) -> None:
        import fastavro

        super().__init__(schema_id, schema_str)
        try:
            parsed = json.loads(schema_str)
            self.schema = fastavro.parse_schema(parsed)
        except Exception as ex:
            raise SchemaUnusable(f"Avro schema id {schema_id} does not parse: {ex}") from None
        self.block: tuple[bytes, bytes] | None = None
        self.fields: list[str] = []  # the writer's, when its records batch
        if _batch_readable(parsed):
            self.fields = [f["name"] for f in parsed["fields"]]
            head = {"name": _HEAD_FIELD, "type": {"type": "fixed", "name": _HEAD_FIELD, "size": 5}}
            fields = [head, *parsed["fields"], {"name": _MARK, "type": "long"}]
            marked = {**parsed, "fields": fields}
            sync = os.urandom(16)
            header = io.BytesIO()
            fastavro.writer(header, fastavro.parse_schema(marked), [], sync_marker=sync)
            self.block = (header.getvalue(), sync)
        self.base = random.randrange(1 << 40, 1 << 41)
        # the marks of places 0, 1, 2, ...; grown under a lock: the workers of a process
        # share this decoder
        self.marks: list[bytes] = []
        self.marks_lock = threading.Lock()
        self.lists: dict[type, msgspec.json.Decoder] = {}
        self.projections: dict[type, list[str]] = {}
        self.plans: dict[type, _DirectPlan] = {}

    def _columns(self, shape: type) -> list[str]:
        """The block's fields that `shape` reads, with the framing and the marker."""
        found = self.projections.get(shape)
        if found is None:
            wanted = {f.encode_name for f in msgspec.structs.fields(shape)}
            fields = [name for name in self.fields if name in wanted]
            found = self.projections[shape] = [_HEAD_FIELD, *fields, _MARK]
        return found

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
        import polars as pl

        if self.block is None:
            return super().events(values, shape)
        n = len(values)
        if len(self.marks) < n:
            with self.marks_lock:
                while len(self.marks) < n:
                    self.marks.append(_long(self.base + len(self.marks)))
        header, sync = self.block
        # the container in one copy: a fresh megabyte buffer costs its page faults, more
        # than the copy (see sources.replay.parse_lines)
        parts: list[Any] = [header, _long(n), b"", *([None] * (2 * n)), sync]
        parts[3:-1:2] = values
        parts[4:-1:2] = self.marks[:n]
        # a None (a tombstone) raises here, and the batch is read one by one
        parts[2] = _long(sum(map(len, values)) + sum(map(len, parts[4:-1:2])))
        container = b"".join(parts)
        try:
            # only the fields the events have (a dataflow's events have the columns its
            # tables read): Polars skips the others, and msgspec never sees them
            frame = pl.read_avro(io.BytesIO(container), columns=self._columns(shape))
            marks = frame.get_column(_MARK)
            exact = (
                frame.height == n
                and marks.equals(pl.Series(range(self.base, self.base + n), dtype=marks.dtype))
                and frame.get_column(_HEAD_FIELD).unique().to_list() == [self.head]
            )
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
            # a block that does not parse (Polars' reader panics on some; a panic is a
            # BaseException, which nothing above would catch)
            exact = False
        if not exact:
            raise ValueError("records do not end where their schema says")
        direct = self._direct(frame, shape)
        if direct is not None:
            return direct
        found = self.lists.get(shape)
        if found is None:
            found = self.lists[shape] = msgspec.json.Decoder(list[shape], strict=False)  # type: ignore[valid-type]
        return found.decode(frame.drop(_HEAD_FIELD, _MARK).write_json())

    def _direct(self, frame: Any, shape: type[E]) -> list[E] | None:
        """`shape`'s events made straight from the frame's columns, with no JSON between
        (0.50 -> 0.38 µs a record); None when only msgspec's decoding can say what they
        are, and the caller takes the JSON way. A column whose type is the field's is
        taken as it is; another is cast as the JSON way casts it (`msgspec.convert`,
        lax: the string "404" into an int field), and a value that does not cast sends the
        batch the JSON way. A null where the field takes none does too."""
        plan = self.plans.get(shape)
        if plan is None:
            plan = self.plans[shape] = _DirectPlan.of(shape, frame.columns)
        if not plan.fields:
            return None
        columns = []
        for name, kind, optional in plan.fields:
            column = frame.get_column(name)
            if not optional and column.null_count():
                return None
            values = column.to_list()
            if _POLARS_KINDS.get(str(column.dtype)) is not kind:
                try:
                    values = msgspec.convert(values, list[kind | None], strict=False)  # type: ignore[valid-type]
                except msgspec.ValidationError:
                    return None
            columns.append(values)
        return plan.make(*columns)


_POLARS_KINDS = {
    **dict.fromkeys(("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32"), int),
    "String": str,
    "Boolean": bool,
}
"""Polars column types whose values are, as Python objects, what msgspec makes of them."""


class _DirectPlan(NamedTuple):
    """How `AvroDecoder._direct` makes one event type's events from a block's columns:
    the columns (name, the field's type, whether it takes null), and a function that makes
    the events from their values. No fields: the type cannot be made so."""

    fields: list[tuple[str, type, bool]]
    make: Callable[..., list[Any]]

    @classmethod
    def of(cls, shape: type, columns: list[str]) -> _DirectPlan:
        fields: list[tuple[str, type, bool]] = []
        keywords: list[str] = []
        for field in msgspec.structs.fields(shape):
            kinds = set(typing.get_args(field.type)) or {field.type}
            optional = type(None) in kinds
            kinds.discard(type(None))
            kind = kinds.pop() if len(kinds) == 1 else None
            if field.encode_name not in columns:
                if field.required:
                    return _NO_PLAN
                continue
            if kind not in (int, str, bool):
                return _NO_PLAN
            fields.append((field.encode_name, kind, optional))
            keywords.append(field.name)
        if not fields:
            return _NO_PLAN
        # A comprehension that calls the type with keywords (its fields are keyword-only),
        # written once per type: as fast as Python makes objects.
        names = [f"v{i}" for i in range(len(keywords))]
        pairs = ", ".join(f"{k}={v}" for k, v in zip(keywords, names, strict=True))
        args = ", ".join(names)
        code = f"lambda {args}: [shape({pairs}) for {args}, in zip({args})]"
        return cls(fields, eval(code, {"shape": shape, "zip": zip}))


_NO_PLAN = _DirectPlan([], list)


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
