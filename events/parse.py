"""Turn batches of raw Kafka records into typed events and dead letters.

Every record read is accounted for exactly once: it becomes an event or a
`DeadLetter` with the reason. The parser keeps the counts and logs them.

Values are plain JSON or in a Schema Registry format (Confluent's framing, decoded by
`events.formats` with the decoders the source attached to the batch). `value_format`
(`KAFKA_VALUE_FORMAT`) says which are allowed; `auto` tells per record, and a record in a
format that is not allowed is a dead letter that says what it was.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from itertools import compress
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from events.formats import SchemaDecoder, framed_id
from events.schema import RawBatch, RawRecord
from events.streams import fill_kafka_columns, permissive_event
from operators.batches import TimedBatch

log = logging.getLogger(__name__)

E = TypeVar("E", bound=msgspec.Struct)


class DeadLetter(NamedTuple):
    """A record that could not be parsed, with where it came from and why."""

    topic: str
    partition: int
    offset: int
    ts: int | None
    key: bytes | None
    payload: bytes | None
    reason: str


class Parsed(NamedTuple, Generic[E]):
    """What `Parser` makes of a batch: the events, and the records that are dead letters."""

    events: TimedBatch[E]
    dead: list[DeadLetter]


# The reason of a dead letter that stands for records deleted before they were read (a
# retention gap, see sources.kafka): a gap, not a bad record.
RECORDS_LOST = "records lost"


def is_utf8(raw: bytes | str) -> bool:
    """Whether a payload is valid UTF-8 (a str: whether it encodes as UTF-8). msgspec reports
    bad UTF-8 as `UnicodeDecodeError` up to 0.22 and as `msgspec.DecodeError` from 0.23 on,
    so the bytes are asked, not the error."""
    try:
        raw.encode() if isinstance(raw, str) else raw.decode()
    except UnicodeError:
        return False
    return True


def _as_bytes(raw: bytes | str | None) -> bytes | None:
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw


def dead_letter(record: RawRecord, reason: str) -> DeadLetter:
    return DeadLetter(
        record.topic,
        record.partition,
        record.offset,
        record.ts,
        _as_bytes(record.key),
        _as_bytes(record.value),
        reason,
    )


def reason_kind(reason: str) -> str:
    """A dead letter's reason without its details, so the label set stays small.

    ```python
    reason_kind("not JSON: input data was truncated")       # "not JSON"
    reason_kind("timestamp 2100-01-01T00:00:00.000Z is ...") # "timestamp in the future"
    ```
    """
    if reason.startswith("timestamp "):
        return "timestamp in the future"
    if reason.startswith("bad replay line"):
        return "bad replay line"
    return reason.split(":", 1)[0]


_SAMPLE = 8  # events of each batch `Parser` looks at for values of the wrong shape


class Parser(Generic[E]):
    """Callable step: `RawBatch` -> `Parsed` (the events as a `TimedBatch[E]`, dead letters).

    Progress (`marks`, `progress`) is kept as read: a record that fails to parse
    still moved its partition forward in event time, as it does in Spark, where
    the timestamp is Kafka metadata and always readable.
    """

    def __init__(
        self,
        shape: type[E],
        name: str,
        log_every_s: float = 10.0,
        on_tombstone: Callable[[RawRecord], E | None] | None = None,
        value_format: str = "auto",
        permissive: bool = False,
        kafka_columns: tuple[str, ...] = (),
    ) -> None:
        self.decoder = msgspec.json.Decoder(shape, strict=False)
        self.shape = shape
        # A declared stream's fields are all optional, and one of the wrong type is null
        # (Spark's from_json); the hand-written shapes of `enrich` refuse the record.
        self.permissive = permissive
        # the Kafka columns (`events.streams.KAFKA_COLUMNS`) a table reads: set per event
        self.kafka_columns = kafka_columns
        # an event none of whose columns was in its value (all null): a sign of the wrong
        # topic, which Spark would count as a row of nulls, as we do; the log says so
        self.blank = shape() if permissive else None
        self.next_blank_warning = 0.0
        self.value_format = value_format
        # plain JSON is read (`json`, `auto`), and may be tried on a whole batch first
        self.json = value_format in ("auto", "json")
        # A compacted topic's null value is a delete, not a bad record.
        self.on_tombstone = on_tombstone
        self.name = name
        self.read = 0
        self.parsed = 0
        self.dead = 0
        self.log_every_s = log_every_s
        self.next_log = time.monotonic() + log_every_s
        # records and dead letters in mostly-dead batches, and their reasons, since the
        # last warning
        self.mostly_dead = [0, 0]
        self.dead_reasons: Counter[str] = Counter()
        self.next_dead_warning = 0.0

    def event_of(self, record: RawRecord, decoders: dict[int, Any] | None = None) -> E | str:
        """The typed event of a record (`decoders`: those of its batch), or why there is none."""
        if record.error is not None:
            return record.error
        if record.ts is None:
            return "no record timestamp"
        if record.value is None:
            deleted = self.on_tombstone(record) if self.on_tombstone else None
            return "empty payload (tombstone)" if deleted is None else deleted
        schema_id = framed_id(record.value)
        if schema_id is not None:
            return self._framed(record.value, schema_id, decoders or {})
        if not self.json:
            return self._not_framed(record.value)
        try:
            return self.decoder.decode(record.value)
        except msgspec.ValidationError as ex:
            if self.permissive:
                return permissive_event(self.shape, msgspec.json.decode(record.value))  # type: ignore[return-value]
            return f"invalid {self.shape.__name__}: {ex}"
        except (msgspec.DecodeError, UnicodeDecodeError) as ex:
            return f"not JSON: {ex}" if is_utf8(record.value) else "payload is not UTF-8"

    def _framed(self, value: bytes, schema_id: int, decoders: dict[int, Any]) -> E | str:
        decoder = decoders.get(schema_id)
        if decoder is None:
            if self.value_format == "json":
                return (
                    f"format not allowed: a record in Confluent's Schema Registry framing "
                    f"(schema id {schema_id}), but KAFKA_VALUE_FORMAT=json"
                )
            return (
                f"no schema registry: a record in Confluent's Schema Registry framing (schema "
                f"id {schema_id}); set KAFKA_SCHEMA_REGISTRY_URL to read it"
            )
        if isinstance(decoder, str):
            return decoder  # unknown id, unreadable schema
        if self.value_format not in ("auto", decoder.format):
            return (
                f"format not allowed: {decoder.format} (schema id {schema_id}), "
                f"but KAFKA_VALUE_FORMAT={self.value_format}"
            )
        try:
            fields = decoder.record(value)
        except ValueError as ex:
            return str(ex)
        try:
            return msgspec.convert(fields, self.shape, strict=False)
        except msgspec.ValidationError as ex:
            if self.permissive:
                return permissive_event(self.shape, fields)  # type: ignore[return-value]
            return f"invalid {self.shape.__name__}: {ex} ({decoder.format} schema id {schema_id})"

    def _not_framed(self, value: bytes | str) -> str:
        what = "plain JSON"
        try:
            msgspec.json.decode(value)
        except Exception:
            what = "a value without Confluent's Schema Registry framing"
        return f"format not allowed: {what}, but KAFKA_VALUE_FORMAT={self.value_format}"

    def _one_schema(self, batch: RawBatch) -> list[E] | None:
        """Every record of a batch with one writer schema, at once; None when some record
        needs a closer look (another format, a bad record: `_one_by_one` says which)."""
        (decoder,) = batch.decoders.values()
        if not isinstance(decoder, SchemaDecoder) or self.value_format not in (
            "auto",
            decoder.format,
        ):
            return None
        try:  # the decoder checks that every value carries its id
            return decoder.events(batch.events, self.shape)
        except Exception:
            return None

    def __call__(self, batch: RawBatch) -> Parsed[E]:
        events: list[E] | None = None
        if not batch.special:
            if len(batch.decoders) == 1:
                events = self._one_schema(batch)
            elif self.json and not batch.decoders:
                try:  # the common case: every payload decodes, the columns are reused as is
                    events = list(map(self.decoder.decode, batch.events))
                except Exception:  # some record is bad: sorted out one by one below
                    events = None
        dead: list[DeadLetter] = []
        keep: list[bool] | None = None
        if events is not None:
            out = _with_events(batch, events)
        else:
            out, dead, keep = self._one_by_one(batch)
        self.read += len(batch.events)
        self.parsed += len(out.events)
        self.dead += len(dead)
        bad = [d for d in dead if not d.reason.startswith(RECORDS_LOST)] if dead else dead
        if len(bad) * 2 > len(batch.events):
            self._warn_mostly_dead(len(batch.events), bad)
        if self.blank is not None and out.events:
            self._warn_if_blank(out.events)
        if self.kafka_columns and out.events:
            keys = (
                batch.keys if keep is None or not batch.keys else list(compress(batch.keys, keep))
            )
            fill_kafka_columns(out.events, self.kafka_columns, out.times, out.origins, keys)
        if batch.at_end or time.monotonic() >= self.next_log:
            self.next_log = time.monotonic() + self.log_every_s
            log.info(
                "%s: read %d records, parsed %d, dead letters %d (this process)%s",
                self.name,
                self.read,
                self.parsed,
                self.dead,
                f"; {batch.part} at end of input" if batch.at_end else "",
            )
        return Parsed(out, dead)

    def _warn_mostly_dead(self, records: int, dead: list[DeadLetter]) -> None:
        """More than half of a batch is dead letters: the wrong topic or shape, most
        likely. Say so in the log (once a minute), not only in the table."""
        self.mostly_dead[0] += records
        self.mostly_dead[1] += len(dead)
        self.dead_reasons.update(reason_kind(d.reason) for d in dead)
        now = time.monotonic()
        if now < self.next_dead_warning:
            return
        self.next_dead_warning = now + 60.0
        top = ", ".join(f"{reason} ({n})" for reason, n in self.dead_reasons.most_common(3))
        log.warning(
            "%s: %d of %d records in batches that were mostly dead letters: %s; "
            "is this the right topic and record shape (%s)?",
            self.name,
            self.mostly_dead[1],
            self.mostly_dead[0],
            top,
            self.shape.__name__,
        )
        self.mostly_dead = [0, 0]
        self.dead_reasons.clear()

    def _warn_if_blank(self, events: list[E]) -> None:
        """Most of a batch's first events have none of the stream's columns: the wrong
        topic or declaration, most likely. A sample of each batch, for the log only; the
        events are counted either way (as rows with null keys)."""
        sample = events[:_SAMPLE]
        blank = sum(1 for e in sample if e == self.blank)
        now = time.monotonic()
        if blank * 2 <= len(sample) or now < self.next_blank_warning:
            return
        self.next_blank_warning = now + 60.0
        log.warning(
            "%s: %d of %d records sampled have none of the columns the tables read (%s); "
            "is this the right topic and declaration? They count as rows of nulls",
            self.name,
            blank,
            len(sample),
            ", ".join(
                f.encode_name for f in msgspec.structs.fields(self.shape) if f.name == f.encode_name
            ),
        )

    def _one_by_one(self, batch: RawBatch) -> tuple[TimedBatch[E], list[DeadLetter], list[bool]]:
        keep: list[bool] = []
        events: list[E] = []
        dead: list[DeadLetter] = []
        decode, special, decoders = self.decoder.decode, batch.special, batch.decoders
        quick = self.json and not decoders
        for i, value in enumerate(batch.events):
            event: E | str
            if quick and value is not None and i not in special:
                try:
                    event = decode(value)
                except Exception:  # event_of says what was wrong
                    event = self.event_of(batch.record(i))
            else:
                event = self.event_of(batch.record(i), decoders)
            if isinstance(event, str):
                dead.append(dead_letter(batch.record(i), event))
            else:
                events.append(event)
            keep.append(not isinstance(event, str))
        return _with_events(batch, events, keep), dead, keep


def _with_events(batch: RawBatch, events: list[Any], keep: list[bool] | None = None) -> TimedBatch:
    """`batch` with `events` in place of its records (those where `keep`, default all)."""
    if keep is None:
        times, marks, lows, origins = batch.times, batch.marks, batch.lows, batch.origins
    else:
        times, marks = list(compress(batch.times, keep)), list(compress(batch.marks, keep))
        lows = None if batch.lows is None else list(compress(batch.lows, keep))
        origins = None if batch.origins is None else batch.origins.select(keep)
    return TimedBatch(
        batch.part,
        batch.parts,
        events,
        times,
        marks,
        batch.progress,
        batch.idle,
        lows,
        origins,
        batch.was_idle,
    )
