"""`clickstream_native` (Rust) against its Python reference, on random batches.

An Avro batch is read at once by `clickstream_native.avro_to_msgpack`; the reference is
fastavro reading each value (`AvroDecoder.record`), then `msgspec.convert`, as the parser
does record by record. For random flat schemas, records and event types, the batch gives
exactly the reference's events, or it is refused (and then read one by one) when some
value is not a record of its schema.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.formats import decoder_for

HEAD = b"\x00\x00\x00\x00\x05"  # Confluent's framing of schema id 5

_EDGES = sorted(
    {e + d for e in (0, 2**7, 2**8, 2**15, 2**16, 2**31) for d in (-1, 0, 1)}
    | {-e + d for e in (32, 2**7, 2**15, 2**31) for d in (-1, 0, 1)}
    | {2**32, 2**63 - 1, -(2**63), -(2**32)}
)
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    # and the edges of every width an integer may be written in, on either side
    "int": st.one_of(
        st.integers(-(2**31), 2**31 - 1),
        st.sampled_from([e for e in _EDGES if -(2**31) <= e < 2**31]),
    ),
    "long": st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(_EDGES)),
    # quotes, backslashes, control characters and non-ASCII text must come back as they were
    "string": st.one_of(
        st.text(max_size=12),
        st.sampled_from(["404", " 7", "1.0", "+3", "1e2", "-0", "true", 'a"b\\c', "\x00\n\x1f"]),
    ),
}
_KINDS = sorted(_VALUES)
_FIELD_TYPES = st.one_of(
    st.sampled_from(_KINDS),
    st.lists(st.sampled_from(_KINDS), min_size=1, max_size=3, unique=True),
)
_EVENT_TYPES = {"str": str | None, "int": int | None, "bool": bool | None, "any": Any}


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict, list[dict], type]:
    """A flat record schema, records of it, and an event type that reads some of its
    fields (and one it lacks), with their types chosen at random."""
    types = draw(st.lists(_FIELD_TYPES, min_size=1, max_size=6))
    names = [f"f{i}" for i in range(len(types))]
    schema = {
        "type": "record",
        "name": "r",
        "fields": [{"name": n, "type": t} for n, t in zip(names, types, strict=True)],
    }

    def value(kind: str | list[str]) -> Any:
        return draw(
            st.one_of(*(_VALUES[k] for k in kind)) if isinstance(kind, list) else _VALUES[kind]
        )

    rows = draw(
        st.lists(
            st.builds(lambda: {n: value(t) for n, t in zip(names, types, strict=True)}),
            min_size=1,
            max_size=8,
        )
    )
    read = draw(st.lists(st.sampled_from([*names, "absent"]), unique=True, min_size=1))
    annotations = {n: _EVENT_TYPES[draw(st.sampled_from(sorted(_EVENT_TYPES)))] for n in read}
    shape = msgspec.defstruct("Event", [(n, t, None) for n, t in annotations.items()], kw_only=True)
    return schema, rows, shape


def _encode(schema: dict, row: dict) -> bytes:
    out = io.BytesIO()
    out.write(HEAD)
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), row)
    return out.getvalue()


def _reference(decoder: Any, values: list[bytes], shape: type) -> list[Any]:
    return [msgspec.convert(decoder.record(v), shape, strict=False) for v in values]


@settings(max_examples=300, deadline=None)
@given(batch=batches(), damage=st.sampled_from(["none", "cut", "extra", "head", "tombstone"]))
def test_an_avro_batch_read_in_rust_equals_fastavro_record_by_record(batch, damage):
    schema, rows, shape = batch
    decoder = decoder_for(5, "AVRO", json.dumps(schema))
    assert decoder.fields is not None, "every flat record of these types takes the batch path"  # type: ignore[attr-defined]
    values: list[Any] = [_encode(schema, row) for row in rows]
    if damage == "cut":
        values[-1] = values[-1][:-1]
    elif damage == "extra":
        values[0] = values[0] + b"\x00"
    elif damage == "head":
        values[0] = b"\x00\x00\x00\x00\x06" + values[0][5:]
    elif damage == "tombstone":
        values[0] = None
    try:
        want = _reference(decoder, values, shape)
    except (ValueError, TypeError) as ex:  # a value the parser dead-letters
        with pytest.raises((ValueError, msgspec.ValidationError)):
            decoder.events(values, shape)
        assert damage != "none" or isinstance(ex, msgspec.ValidationError)
        return
    if damage == "none":
        assert decoder.events(values, shape) == want
    else:  # whatever fastavro makes of a damaged value, the batch never reads it
        with pytest.raises(ValueError):
            decoder.events(values, shape)


def test_a_value_that_ends_early_or_late_is_refused_not_misread():
    """A varint that never ends, a string longer than the value, a union branch past the
    last: the batch is refused, and the parser reads it one by one."""
    schema = {"type": "record", "name": "r", "fields": [{"name": "s", "type": ["null", "string"]}]}
    decoder = decoder_for(5, "AVRO", json.dumps(schema))
    shape = msgspec.defstruct("S", [("s", str | None, None)], kw_only=True)
    good = _encode(schema, {"s": "abc"})
    assert decoder.events([good], shape) == [shape(s="abc")]
    for bad in (HEAD + b"\xff" * 11, HEAD + b"\x02\x20ab", HEAD + b"\x04", HEAD + b"\x02\x02\xff"):
        with pytest.raises(ValueError, match="not every value is a record of schema id 5"):
            decoder.events([good, bad], shape)
