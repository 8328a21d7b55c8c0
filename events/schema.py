"""Typed events, with the shapes of Confluent's datagen clickstream quickstart.

Numbers may arrive as JSON strings (datagen sends `status` and `bytes` that way);
they are accepted and converted, as Spark's casts do. Where an event was read from
(topic, partition, offset) and its event time (the Kafka timestamp) travel next to
it in the batch (`TimedBatch.origins`, `times`), not in the payload.
"""

from __future__ import annotations

import builtins
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


class Click(msgspec.Struct, kw_only=True):
    """A `clickstream` record (key: ip)."""

    ip: str
    userid: int
    request: str
    status: int
    bytes: int | None = None
    remote_user: str | None = None
    time: str | None = None
    referrer: str | None = None
    agent: str | None = None


class UserClick(msgspec.Struct, kw_only=True, rename="upper"):
    """A `USER_CLICKSTREAM` record: a click joined with its user (key: user_id), the value
    ksqlDB made: upper-case fields, numbers as numbers, in ksqlDB's order.

    A join miss leaves `username`, `registered_at` and `city` null.
    """

    username: str | None = None
    registered_at: int | None = None
    ip: str
    city: str | None = None
    request: str
    status: int
    bytes: int | None = None

    @classmethod
    def join(cls, click: Click, user: User | None) -> UserClick:
        """`click` LEFT JOIN `user`: a user without a name is a miss."""
        known = user is not None and user.username is not None
        return cls(
            username=user.username if known else None,  # type: ignore[union-attr]
            registered_at=user.registered_at if known else None,  # type: ignore[union-attr]
            ip=click.ip,
            city=user.city if known else None,  # type: ignore[union-attr]
            request=click.request,
            status=click.status,
            bytes=click.bytes,
        )

    def encode(self) -> builtins.bytes:  # `bytes` is a field here
        """The record's value: JSON, as on the `USER_CLICKSTREAM` topic."""
        return _ENCODER.encode(self)


_ENCODER = msgspec.json.Encoder()


class User(msgspec.Struct, kw_only=True):
    """A `clickstream_users` record (key: user_id)."""

    user_id: int
    username: str | None = None
    registered_at: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    level: str | None = None
