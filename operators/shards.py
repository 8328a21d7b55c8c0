"""State shards that any worker can own: a stable shard per key, and the live shards of
an operator in this process, for monitoring. Used by `count_window` and `lookup_join`.
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

DEFAULT_SHARDS = 32


def shard_of(key: Hashable, shards: int) -> int:
    """Stable shard of a key, the same in every process (unlike `hash` of a str)."""
    if key is None:
        return 0
    if isinstance(key, int):
        return key % shards
    raw = key.encode() if isinstance(key, str) else repr(key).encode()
    return zlib.crc32(raw) % shards


class ShardCache(dict[Hashable, int]):
    """`shard_of` for a fixed number of shards, remembered per key: `cache[key]`."""

    def __init__(self, shards: int) -> None:
        super().__init__()
        self.shards = shards

    def __missing__(self, key: Hashable) -> int:
        if len(self) > 1_000_000:
            self.clear()
        shard = self[key] = shard_of(key, self.shards)
        return shard


S = TypeVar("S")


class LiveShards(Generic[S]):
    """The state shards of one operator in this process, for monitoring: any thread may
    read them, without locking, so a figure may be a batch old."""

    def __init__(self) -> None:
        self.shards: weakref.WeakSet[Any] = weakref.WeakSet()

    def _live(self) -> list[S]:
        while True:
            try:
                return list(self.shards)
            except RuntimeError:  # a shard was being built at that moment
                continue
