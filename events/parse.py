"""Turn batches of raw Kafka records into typed events and dead letters.

Every record read is accounted for exactly once: it becomes an event or a
`DeadLetter` with the reason. The parser keeps the counts and logs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

import msgspec

from events.schema import RawRecord
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


class Parser(Generic[E]):
    """Callable step: `TimedBatch[RawRecord]` -> (`TimedBatch[E]`, dead letters).

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
    ) -> None:
        self.decoder = msgspec.json.Decoder(shape, strict=False)
        self.shape = shape
        # A compacted topic's null value is a delete, not a bad record.
        self.on_tombstone = on_tombstone
        self.name = name
        self.read = 0
        self.parsed = 0
        self.dead = 0
        self.log_every_s = log_every_s
        self.next_log = time.monotonic() + log_every_s

    def event_of(self, record: RawRecord) -> E | str:
        """The typed event of a record, or why there is none."""
        if record.error is not None:
            return record.error
        if record.ts is None:
            return "no record timestamp"
        if record.value is None:
            deleted = self.on_tombstone(record) if self.on_tombstone else None
            return "empty payload (tombstone)" if deleted is None else deleted
        try:
            return self.decoder.decode(record.value)
        except msgspec.ValidationError as ex:
            return f"invalid {self.shape.__name__}: {ex}"
        except UnicodeDecodeError:
            return "payload is not UTF-8"
        except msgspec.DecodeError as ex:
            return f"not JSON: {ex}"

    def __call__(self, batch: TimedBatch[RawRecord]) -> tuple[TimedBatch[E], list[DeadLetter]]:
        events: list[E] = []
        times: list[int] = []
        marks: list[int] = []
        lows: list[int] | None = None if batch.lows is None else []
        dead: list[DeadLetter] = []
        decode = self.decoder.decode
        for i, (record, mark) in enumerate(zip(batch.events, batch.marks, strict=True)):
            value = record.value
            event: E | str
            if value is not None and record.error is None and record.ts is not None:
                try:
                    event = decode(value)
                except Exception:  # event_of says what was wrong
                    event = self.event_of(record)
            else:
                event = self.event_of(record)
            if isinstance(event, str):
                dead.append(dead_letter(record, event))
                continue
            event.source = record  # type: ignore[attr-defined]
            events.append(event)
            times.append(record.ts)  # type: ignore[arg-type] # event_of checked it
            marks.append(mark)
            if lows is not None:
                lows.append(batch.lows[i])  # type: ignore[index]
        self.read += len(batch.events)
        self.parsed += len(events)
        self.dead += len(dead)
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
        out = TimedBatch(
            batch.part, batch.parts, events, times, marks, batch.progress, batch.idle, lows
        )
        return out, dead
