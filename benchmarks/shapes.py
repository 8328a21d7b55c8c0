"""The hand-written event structs the dataflows had before streams were declared
(`streams/*.sql`): every field typed, the required ones strict. The benchmarks keep
them as the baseline a declared stream is measured against, and as the shapes their
parse ceilings decode."""

from __future__ import annotations

import msgspec


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
