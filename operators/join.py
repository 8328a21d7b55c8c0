"""Stream-table LEFT JOIN in event time: what ksqlDB's USER_CLICKSTREAM stream did.

`lookup_join(left, right)` pairs each left event with the latest right record with
the same key *as of the left event's time*, or `None` when there is none (a join
miss). Both inputs are `TimedBatch` streams; records of both sides are applied in
event-time order once both sides' progress has passed them, as Kafka Streams'
timestamp synchronisation does. So a click joins the user record that existed
when it happened, whatever order the topics are read in; a bounded replay gives
the same output every time.

The table is held per shard (a stable hash of the key) and is part of the
recovery state: a restart does not forget users. A side whose partitions are all
idle stops holding the other back (see `TimedBatch.idle`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators.batches import Origin, TimedBatch
from operators.clock import Clock
from operators.shards import DEFAULT_SHARDS, LiveShards, ShardCache

L = TypeVar("L")
R = TypeVar("R")

LEFT, RIGHT = 1, 0  # at equal times the table update comes first


@dataclass(frozen=True)
class Joined(Generic[L, R]):
    """A left event, its event time, the right record it joined (None: a miss), and
    where the left event was read (so a sink can write each one exactly once)."""

    left: L
    time: int
    right: R | None
    origin: Origin | None = None


@dataclass(frozen=True)
class _SideMsg:
    side: int
    part: str
    parts: int
    items: list[tuple[int, Hashable, Any, Origin | None]]  # (time, key, event, origin)
    progress: int
    idle: bool


class _Router:
    def __init__(self, side: int, key: Callable[[Any], Hashable], shards: int) -> None:
        self.side = side
        self.key = key
        self.shards = shards
        self.names = [f"{i:03d}" for i in range(shards)]
        self.shard_of = ShardCache(shards)

    def __call__(self, batch: TimedBatch[Any]) -> list[tuple[str, _SideMsg]]:
        buckets: list[list[tuple[int, Hashable, Any, Origin | None]]] = [
            [] for _ in range(self.shards)
        ]
        shard = self.shard_of
        origins: Iterable[Origin | None] = (
            batch.origins if batch.origins is not None else [None] * len(batch.events)
        )
        for event, time, origin in zip(batch.events, batch.times, origins, strict=True):
            k = self.key(event)
            buckets[shard[k]].append((time, k, event, origin))
        return [
            (name, _SideMsg(self.side, batch.part, batch.parts, items, batch.progress, batch.idle))
            for name, items in zip(self.names, buckets, strict=True)
        ]


class JoinStats(LiveShards["_JoinLogic"]):
    """What a `lookup_join` holds in this process: its table."""

    def table_rows(self) -> int:
        """Right records held (users, for enrich)."""
        return sum(len(shard.table) for shard in self._live())


class _JoinLogic(StatefulBatchLogic[_SideMsg, list[Joined], Any]):
    def __init__(self, resume: tuple | None) -> None:
        if resume is None:
            self.clocks = (Clock(), Clock())
            self.table: dict[Hashable, Any] = {}
            self.pending: list[tuple[int, int, int, Hashable, Any, Origin | None]] = []
            self.seq = 0
        else:
            right, left, table, pending, self.seq = resume
            self.clocks = (Clock.restore(right), Clock.restore(left))
            self.table = dict(table)
            # entries from a store written before origins were kept have none
            self.pending = [p if len(p) == 6 else (*p, None) for p in pending]

    def on_batch(self, values: list[_SideMsg]) -> tuple[list[list[Joined]], bool]:
        for msg in values:
            for time, key, event, origin in msg.items:
                self.seq += 1
                heapq.heappush(self.pending, (time, msg.side, self.seq, key, event, origin))
            self.clocks[msg.side].update(msg)
        # A side whose partitions are all idle holds the other back no longer: its own
        # progress stays at its last event time, and a users topic last written an hour
        # ago held every click back for an hour (found by `just chaos`).
        holding = [clock.low for clock in self.clocks if not clock.all_idle]
        frontier = min(holding) if holding else max(clock.low for clock in self.clocks)
        out: list[Joined] = []
        pending, table = self.pending, self.table
        while pending and pending[0][0] <= frontier:
            time, side, _, key, event, origin = heapq.heappop(pending)
            if side == RIGHT:
                table[key] = event
            else:
                out.append(Joined(event, time, table.get(key), origin))
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> tuple:
        return (
            self.clocks[RIGHT].snapshot(),
            self.clocks[LEFT].snapshot(),
            dict(self.table),
            list(self.pending),
            self.seq,
        )


@operator
def lookup_join(
    step_id: str,
    left: Stream[TimedBatch[L]],
    right: Stream[TimedBatch[R]],
    left_key: Callable[[L], Hashable],
    right_key: Callable[[R], Hashable],
    shards: int = DEFAULT_SHARDS,
    stats: JoinStats | None = None,
) -> Stream[list[Joined[L, R]]]:
    """LEFT JOIN each left event with the right record of its key as of its event time.

    ```python
    enriched = lookup_join("users", clicks, users,
                           left_key=lambda c: c.userid, right_key=lambda u: u.user_id)
    # [Joined(click, ts, user_or_None, (topic, partition, offset)), ...]
    ```

    A right record with the same key replaces the previous one (a table), in event
    time order. A right record that is `None`-valued is up to the caller: map
    tombstones to a value your consumer treats as deleted. Pass a `JoinStats` to
    watch the size of the table.
    """

    def build(resume: tuple | None) -> _JoinLogic:
        logic = _JoinLogic(resume)
        if stats is not None:
            stats.shards.add(logic)
        return logic

    lefts = op.flat_map("route_left", left, _Router(LEFT, left_key, shards))
    rights = op.flat_map("route_right", right, _Router(RIGHT, right_key, shards))
    joined = op.stateful_batch("join", op.merge("sides", lefts, rights), build)
    return op.key_rm("unshard", joined)
