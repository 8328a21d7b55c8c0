"""Records as read, before parsing: one (`RawRecord`) or a batch in columns (`RawBatch`).

The events parsed from them are a stream's declaration's (`events.streams`). Where a
record was read from (topic, partition, offset) and its event time travel next to it
in the batch (`TimedBatch.origins`, `times`), not in the payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from operators.batches import TimedBatch


class RawRecord(msgspec.Struct):
    """One Kafka record as read, before parsing. `ts` is None when unknown.

    It is also the shape of a `kcat -J` line (whose `payload` is our `value`), so
    the replay source decodes lines straight into it. A source that already knows
    the record is unreadable (a broken replay line) sets `error`; the parser turns
    it into a dead letter with that reason.
    """

    topic: str
    partition: int
    offset: int
    ts: int | None = None
    # bytes from Kafka, str from a replay line (msgspec cannot decode a bytes | str union)
    key: Any = None
    value: Any = msgspec.field(default=None, name="payload")
    error: str | None = None


@dataclass(frozen=True)
class RawBatch(TimedBatch[Any]):
    """Records as read, in columns: `events` are the payloads (bytes from Kafka, str
    from a replay line, None for a tombstone), with `origins`, `times` and `keys`.

    Columns keep the read path cheap: no object per record. `special` holds the
    records that cannot be taken from the columns as they are: no Kafka timestamp
    (its `times` entry is only a stand-in) or an unreadable replay line (`error`).
    """

    keys: list[Any] = field(default_factory=list)
    special: dict[int, RawRecord] = field(default_factory=dict)
    # For values in Confluent's framing: the decoder of each schema id in the batch, or
    # why its records cannot be decoded (`sources.schemas`).
    decoders: dict[int, Any] = field(default_factory=dict)

    def record(self, i: int) -> RawRecord:
        """The `i`-th record as a `RawRecord` (for dead letters)."""
        special = self.special.get(i)
        if special is not None:
            return special
        topic, partition, offset = self.origins[i]  # type: ignore[index] # sources set it
        return RawRecord(topic, partition, offset, self.times[i], self.keys[i], self.events[i])
