"""Typed events, with the shapes of Confluent's datagen clickstream quickstart.

Numbers may arrive as JSON strings (datagen sends `status` and `bytes` that way);
they are accepted and converted, as Spark's casts do. The record an event was read
from (topic, partition, offset, and the Kafka timestamp that is its event time) is
attached by the parser as `source`, not read from the payload.
"""

from __future__ import annotations

from typing import Any

import msgspec


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
    # Set by the parser: the record this event was read from.
    source: RawRecord | None = None


class UserClick(msgspec.Struct, kw_only=True, rename="upper"):
    """A `USER_CLICKSTREAM` record: a click joined with its user (key: user_id).

    A join miss leaves `username`, `registered_at` and `city` null.
    """

    ip: str
    request: str
    status: int
    username: str | None = None
    registered_at: int | None = None
    city: str | None = None
    bytes: int | None = None
    # Set by the parser: the record this event was read from.
    source: RawRecord | None = None


class User(msgspec.Struct, kw_only=True):
    """A `clickstream_users` record (key: user_id)."""

    user_id: int
    username: str | None = None
    registered_at: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    level: str | None = None
    # Set by the parser: the record this user was read from.
    source: RawRecord | None = None
