"""The decoders a Kafka batch travels with: every schema id among its values, found once
per process, whatever else the batch holds (tombstones, plain JSON, garbage)."""

from __future__ import annotations

from events.encoders import CLICK, AvroEncoder
from events.formats import decoder_for
from kafka_client.settings import RegistrySettings
from sources.schemas import WriterSchemas


def test_every_schema_id_of_a_batch_is_found_among_tombstones_json_and_garbage():
    avro = AvroEncoder(CLICK)
    record = {
        "ip": "1",
        "userid": 1,
        "remote_user": "-",
        "time": "1",
        "_time": 1,
        "request": "GET /",
        "status": "200",
        "bytes": "1",
        "referrer": "-",
        "agent": "a",
    }
    # no registry answers at this address: ids must come from what is known already
    schemas = WriterSchemas(RegistrySettings("http://127.0.0.1:9"))
    known = {i: decoder_for(i, "AVRO", avro.schema_str) for i in (7, 8)}
    schemas.decoders.update(known)
    values = [avro.encode(7, record), None, b'{"ip": "1"}', b"\x00\x01", avro.encode(8, record)]
    assert schemas.for_values(values) == known
    assert schemas.for_values([None, avro.encode(8, record)]) == {8: known[8]}
    assert schemas.for_values([b'{"ip": "1"}', None]) == {}
