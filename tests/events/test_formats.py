"""Values in Schema Registry formats, without a registry: Confluent's framing, each
decoder against an encoder, and what the parser makes of records in a format the
setting does not allow (the dead letter says what they were)."""

from __future__ import annotations

import io
import json

import fastavro
import msgspec
import pytest

from benchmarks.shapes import Click, UserClick
from events import datagen
from events.encoders import CLICK, ENCODERS, AvroEncoder, ksql_shape
from events.formats import SchemaUnusable, _message_path, decoder_for, framed_id
from events.parse import Parser
from events.schema import RawBatch
from operators.batches import Origins
from sql import load_streams

USER_CLICK = ksql_shape(load_streams()["user_clickstream"].columns)


RECORD = {
    "ip": "111.152.45.45",
    "userid": 12,
    "remote_user": "-",
    "time": "1",
    "_time": 1,
    "request": "GET /site/login.html HTTP/1.1",
    "status": "404",
    "bytes": "4096",
    "referrer": "-",
    "agent": "Googlebot",
}


def _batch(values: list, decoders: dict | None = None) -> RawBatch:
    n = len(values)
    times = [1_700_000_000_000 + i for i in range(n)]
    return RawBatch(
        "t#0",
        1,
        values,
        times,
        times,
        times[-1],
        origins=Origins("t", 0, list(range(n))),
        keys=[None] * n,
        decoders=decoders or {},
    )


def test_framing_is_byte_zero_then_a_big_endian_id():
    assert framed_id(b"\x00\x00\x00\x01\x07rest") == 263
    assert framed_id(b'{"ip": "1"}') is None
    assert framed_id(b"\x00\x00") is None  # too short to be framed
    assert framed_id(None) is None


@pytest.mark.parametrize("value_format", sorted(ENCODERS))
@pytest.mark.parametrize("shape", [CLICK, USER_CLICK], ids=["click", "user_click"])
def test_each_format_reads_back_what_it_wrote(value_format, shape):
    encoder = ENCODERS[value_format](shape)
    record = (
        RECORD
        if shape is CLICK
        else {
            "USERNAME": None,
            "REGISTERED_AT": 5,
            "IP": "1.2.3.4",
            "CITY": None,
            "REQUEST": "GET /",
            "STATUS": 404,
            "BYTES": None,
        }
    )
    value = encoder.encode(300, record)
    assert framed_id(value) == 300
    decoder = decoder_for(300, encoder.schema_type, encoder.schema_str)
    assert decoder.format == value_format
    got = decoder.record(value)
    # Protobuf has no nulls: an unset optional field is missing, which reads as null
    assert {k: got.get(k) for k in record} == record


def test_protobuf_message_indexes_follow_confluents_encoding():
    assert _message_path(b"\x00", 0) == ((0,), 1)  # the shortcut for the first message
    # [1, 0]: count 2, then 1 and 0, each zigzag-encoded
    assert _message_path(bytes([4, 2, 0]), 0) == ((1, 0), 3)


def test_a_schema_we_cannot_use_says_why():
    with pytest.raises(SchemaUnusable, match="Avro schema id 4 does not parse"):
        decoder_for(4, "AVRO", '{"type": "recrd"}')
    with pytest.raises(SchemaUnusable, match="of type XML, which we cannot read"):
        decoder_for(5, "XML", "<schema/>")
    with pytest.raises(SchemaUnusable, match="Protobuf schema id 6 does not compile"):
        decoder_for(6, "PROTOBUF", "message {")


def test_avro_with_bytes_left_over_or_cut_short_is_not_read_as_a_record():
    encoder = AvroEncoder(CLICK)
    decoder = decoder_for(1, "AVRO", encoder.schema_str)
    value = encoder.encode(1, RECORD)
    with pytest.raises(ValueError, match="not Avro: schema id 1: 3 bytes left over"):
        decoder.record(value + b"abc")
    with pytest.raises(ValueError, match="not Avro: schema id 1"):
        decoder.record(value[:-4])


def test_the_parser_reads_a_batch_of_one_schema_and_mixed_batches_alike():
    avro = AvroEncoder(CLICK)
    decoders = {9: decoder_for(9, "AVRO", avro.schema_str)}
    framed = [avro.encode(9, {**RECORD, "userid": i}) for i in range(5)]
    plain = msgspec.json.encode(RECORD)
    parser = Parser(Click, "t")
    one = parser(_batch(framed, decoders))
    assert [e.userid for e in one.events.events] == [0, 1, 2, 3, 4] and not one.dead
    assert one.events.events[0].status == 404  # Datagen's string, cast as for JSON
    mixed = parser(_batch([framed[0], plain, framed[1]], decoders))
    assert [e.userid for e in mixed.events.events] == [0, 12, 1] and not mixed.dead


@pytest.mark.parametrize(
    ("value_format", "framed_reason", "plain_reason"),
    [
        (
            "json",
            "format not allowed: a record in Confluent's Schema Registry framing (schema id 9), "
            "but KAFKA_VALUE_FORMAT=json",
            None,
        ),
        ("avro", None, "format not allowed: plain JSON, but KAFKA_VALUE_FORMAT=avro"),
        (
            "json_sr",
            "format not allowed: avro (schema id 9), but KAFKA_VALUE_FORMAT=json_sr",
            "format not allowed: plain JSON, but KAFKA_VALUE_FORMAT=json_sr",
        ),
    ],
)
def test_a_record_in_a_format_the_setting_does_not_allow_is_a_dead_letter_saying_what_it_was(
    value_format, framed_reason, plain_reason
):
    avro = AvroEncoder(CLICK)
    # a source with format json asks no registry, so its batches carry no decoders
    decoders = {} if value_format == "json" else {9: decoder_for(9, "AVRO", avro.schema_str)}
    batch = _batch([avro.encode(9, RECORD), msgspec.json.encode(RECORD), b"\x01garbage"], decoders)
    parsed = Parser(Click, "t", value_format=value_format)(batch)
    reasons = {d.offset: d.reason for d in parsed.dead}
    assert reasons.get(0) == framed_reason
    assert reasons.get(1) == plain_reason
    assert reasons[2] == (
        "not JSON: JSON is malformed: invalid character (byte 0)"
        if value_format == "json"
        else "format not allowed: a value without Confluent's Schema Registry framing, "
        f"but KAFKA_VALUE_FORMAT={value_format}"
    )
    assert len(parsed.events.events) + len(parsed.dead) == 3


def test_framed_records_without_a_registry_unknown_ids_and_missing_fields_say_so():
    avro = AvroEncoder(CLICK)
    no_status = {
        **avro.schema,
        "fields": [f for f in avro.schema["fields"] if f["name"] != "status"],
    }
    out = io.BytesIO(b"\x00\x00\x00\x00\x0b")
    out.seek(5)
    fastavro.schemaless_writer(out, fastavro.parse_schema(no_status), RECORD)
    decoders = {
        11: decoder_for(11, "AVRO", json.dumps(no_status)),
        12: "unknown schema id: 12 is not in the Schema Registry (HTTP 404: Not Found)",
    }
    values = [out.getvalue(), avro.encode(12, RECORD), avro.encode(13, RECORD)]
    parsed = Parser(Click, "t")(_batch(values, decoders))
    reasons = [d.reason for d in parsed.dead]
    assert reasons[0] == (
        "invalid Click: Object missing required field `status` (avro schema id 11)"
    )
    assert reasons[1] == decoders[12]
    assert reasons[2] == (
        "no schema registry: a record in Confluent's Schema Registry framing (schema id 13); "
        "set KAFKA_SCHEMA_REGISTRY_URL to read it"
    )


def test_ksqldb_avro_reads_as_its_json_upper_case_fields_and_nulls():
    avro = ENCODERS["avro"](USER_CLICK)
    record = {
        "USERNAME": None,
        "REGISTERED_AT": None,
        "IP": "1.2.3.4",
        "CITY": None,
        "REQUEST": "GET /",
        "STATUS": 404,
        "BYTES": 278,
    }
    decoders = {3: decoder_for(3, "AVRO", avro.schema_str)}
    parser = Parser(UserClick, "t")
    from_avro = parser(_batch([avro.encode(3, record)], decoders)).events.events
    from_json = parser(_batch([msgspec.json.encode(record)])).events.events
    assert from_avro == from_json and from_json[0].bytes == 278


def test_an_avro_batch_is_read_at_once_exactly_as_record_by_record():
    avro = AvroEncoder(CLICK)
    decoder = decoder_for(9, "AVRO", avro.schema_str)
    clicks = datagen.ClickGenerator(4)
    values = [avro.encode(9, clicks.click()) for _ in range(3_000)]
    one_by_one = [msgspec.convert(decoder.record(v), Click, strict=False) for v in values]
    assert decoder.events(values, Click) == one_by_one
    # a record longer or shorter than its schema says: the batch is refused, and read one
    # by one (where that record is a dead letter)
    for bad in (values[7] + b"\x02\x41", values[7][:-3], values[7] + b"\x00"):
        with pytest.raises(ValueError, match="not every value is a record of schema id 9"):
            decoder.events([*values[:7], bad, *values[8:]], Click)
    last = [*values[:-1], values[-1] + b"\x02"]  # trailing bytes after the very last
    with pytest.raises(ValueError):
        decoder.events(last, Click)


def test_an_avro_schema_the_batch_path_cannot_read_exactly_goes_record_by_record():
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "ip", "type": "string"},
            {"name": "weight", "type": "double"},  # NaN has no JSON
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    decoder = decoder_for(2, "AVRO", json.dumps(schema))
    assert decoder.fields is None  # type: ignore[attr-defined]
