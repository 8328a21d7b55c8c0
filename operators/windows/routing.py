"""Routing batches to state shards, and combining a batch before it is routed (a
map-side combiner: counts per key and pane, or runs of events per key for sessions)
when no event of it can be late.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from itertools import compress
from operator import itemgetter, sub
from time import monotonic
from typing import Any, Generic, NamedTuple, TypeVar

from clickstream_native import count_panes

from operators.aggregates import Aggregates
from operators.batches import Origin, TimedBatch
from operators.shards import ShardCache
from operators.windows.specs import Sliding

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


class ShardMsg(NamedTuple):
    """The slice of one `TimedBatch` that belongs to one shard: either every event
    (`items`: key, time, mark, low, event, origin) or the batch combined (`rows`, see
    `combine_panes`, `combine_sessions`).

    `Splitter` sends these fields as a plain tuple, in this order, and the shard reads
    them back as a `ShardMsg` (`as_shard_msg`): a message that crosses to another
    process is pickled on its own (twice, by Bytewax), and a class goes with it by name
    (measured: 1.9 µs a dump for the dataclass this was, 0.55 µs for the tuple)."""

    part: str
    parts: int
    items: list[tuple[Hashable, int, int, int, Any, Origin | None]]
    progress: int
    idle: bool
    rows: list[tuple] | None = None


def as_shard_msg(fields: tuple) -> ShardMsg:
    """A `ShardMsg` of the plain tuple `Splitter` sent (no copy, no checks)."""
    return tuple.__new__(ShardMsg, fields)


Key = Callable[[Any], Hashable]
Where = Callable[[Any], bool] | None


def combine_panes(
    batch: TimedBatch[Any],
    key: Key,
    where: Where,
    window: Sliding,
    delay: int,
    aggs: Aggregates | None = None,
) -> list[tuple[Hashable, int, Any]] | None:
    """Count a batch's events (those `where` holds) per key and pane, the stretch of time
    an event falls in (`Sliding.pane_ms`): `(key, pane, count)` rows, or `(key, pane,
    saved partial)` with `aggs` (`Aggregates.save`: plain data, as rows may go to
    another process); `None` if some event of the batch may be late for its first window.

    ```python
    combine_panes(batch_of([("a", 1_000), ("a", 4_000), ("b", 6_000)]), key, None,
                  Sliding(60_000, 5_000), 60_000)
    # [("a", 0, 2), ("b", 5_000, 1)]
    ```
    """
    times, marks = batch.times, batch.marks
    slide, length = window.pane_ms, window.length_ms
    # The first window of an event is closed for it when its end is at or before its
    # partition's watermark; the first end grows with the event's time.
    first_end = window.first_start(min(times)) + length
    if first_end + delay <= max(marks):  # cheap bound failed: exact test
        ends = [window.first_start(t) + length for t in times]
        if min(map(sub, ends, marks)) + delay <= 0:
            return None
    if aggs is not None:
        groups: defaultdict[tuple[Hashable, int], list] = defaultdict(list)
        for e, t in zip(batch.events, times, strict=True):
            if where is None or where(e):
                groups[(key(e), t - t % slide)].append(e)
        # saved: rows may cross to another process, and partial states do not pickle
        return [(k, p, aggs.save(aggs.of(events))) for (k, p), events in groups.items()]
    if where is None:
        keys = list(map(key, batch.events))
    else:
        keep = list(map(where, batch.events))
        keys = list(map(key, compress(batch.events, keep)))
        times = list(compress(times, keep))
    # In Rust: a fifth of a worker's time went to the Counter below (docs/performance.md)
    rows = count_panes(keys, times, slide)
    if rows is not None:
        return rows
    counted = Counter(zip(keys, [t - t % slide for t in times], strict=True))
    return [(k, p, n) for (k, p), n in counted.items()]


def combine_sessions(
    batch: TimedBatch[Any],
    key: Key,
    where: Where,
    gap: int,
    delay: int,
    aggs: Aggregates | None = None,
) -> list[tuple[Hashable, int, int, Any]] | None:
    """Merge a batch's events (those `where` holds) into runs per key, `(key, first,
    last, count)` (or a saved partial of `aggs` for the count), with at most `gap` between
    neighbours; `None` if some event may be late.

    ```python
    combine_sessions(batch_of([("a", 0), ("a", 20_000), ("a", 90_000)]), key, None, 30_000, 30_000)
    # [("a", 0, 20_000, 2), ("a", 90_000, 90_000, 1)]
    ```
    """
    times, marks = batch.times, batch.marks
    # Late: t + gap <= mark - delay; cheap bound first, then the exact test. An event that
    # is not late cannot touch a session the shard has emitted (`operators.windows.session`),
    # so the runs may be merged in any order.
    if min(times) + gap + delay <= max(marks) and min(map(sub, times, marks)) + gap + delay <= 0:
        return None
    if aggs is not None:
        return _runs_of_events(batch, key, where, gap, aggs)
    per_key: defaultdict[Hashable, list[int]] = defaultdict(list)
    if where is None:
        for k, t in zip(map(key, batch.events), times, strict=True):
            per_key[k].append(t)
    else:
        for e, t in zip(batch.events, times, strict=True):
            if where(e):
                per_key[key(e)].append(t)
    rows = []
    for k, ts in per_key.items():
        ts.sort()
        start = last = ts[0]
        n = 0
        for t in ts:
            if t - last > gap:
                rows.append((k, start, last, n))
                start, n = t, 0
            last = t
            n += 1
        rows.append((k, start, last, n))
    return rows


def _runs_of_events(
    batch: TimedBatch[Any], key: Key, where: Where, gap: int, aggs: Aggregates
) -> list[tuple[Hashable, int, int, Any]]:
    """`combine_sessions` with the partial states of `aggs` for the runs' events."""
    per_key: defaultdict[Hashable, list[tuple[int, Any]]] = defaultdict(list)
    for e, t in zip(batch.events, batch.times, strict=True):
        if where is None or where(e):
            per_key[key(e)].append((t, e))
    rows = []
    for k, timed in per_key.items():
        timed.sort(key=itemgetter(0))
        start = last = timed[0][0]
        events: list[Any] = []
        for t, e in timed:
            if t - last > gap:
                rows.append((k, start, last, aggs.save(aggs.of(events))))
                start, events = t, []
            last = t
            events.append(e)
        rows.append((k, start, last, aggs.save(aggs.of(events))))
    return rows


Combine = Callable[[TimedBatch[Any], Key, Where], list[tuple] | None]


class Splitter(Generic[E]):
    """Routes each batch to the shards, combined when that is safe.

    A shard gets a message when the batch has events for it. Every shard hears every
    partition's progress at least every `broadcast_s` and at once on heartbeats,
    the end of input and after idleness; a shard that hears progress later only
    emits later, since lateness is judged against each event's own partition.
    """

    def __init__(
        self,
        key: Callable[[E], Hashable],
        where: Callable[[E], bool] | None,
        shards: int,
        combine: Combine,
        broadcast_s: float = 0.2,
    ) -> None:
        self.key = key
        self.where = where
        self.shards = shards
        self.combine = combine
        self.names = [f"{i:03d}" for i in range(shards)]
        self.shard_of = ShardCache(shards)
        self.broadcast_s = broadcast_s
        self.last_broadcast: dict[str, float] = {}

    def __call__(self, batch: TimedBatch[E]) -> list[tuple[str, tuple]]:
        buckets: list[list] = [[] for _ in range(self.shards)]
        combined = None
        if batch.events:
            shard = self.shard_of
            if not batch.was_idle:
                combined = self.combine(batch, self.key, self.where)
            if combined is not None:
                for row in combined:
                    buckets[shard[row[0]]].append(row)
            else:
                for item in self._items(batch):
                    buckets[shard[item[0]]].append(item)
        part, parts, progress, idle = batch.part, batch.parts, batch.progress, batch.idle
        now = monotonic()
        everyone = (
            not batch.events
            or batch.at_end
            or batch.was_idle
            or now - self.last_broadcast.get(part, -1e9) >= self.broadcast_s
        )
        if everyone:
            self.last_broadcast[part] = now
        if combined is not None:
            return [
                (name, (part, parts, [], progress, idle, rows))
                for name, rows in zip(self.names, buckets, strict=True)
                if rows or everyone
            ]
        return [
            (name, (part, parts, items, progress, idle, None))
            for name, items in zip(self.names, buckets, strict=True)
            if items or everyone
        ]

    def _items(self, batch: TimedBatch[E]) -> Iterator[tuple]:
        """(key, time, mark, low, event, origin) of every event `where` holds."""
        n = len(batch.events)
        lows = batch.lows if batch.lows is not None else batch.marks
        origins: Iterable[Origin | None] = (
            batch.origins if batch.origins is not None else [None] * n
        )
        columns: Iterator[tuple] = zip(
            batch.events, batch.times, batch.marks, lows, origins, strict=True
        )
        if self.where is not None:
            columns = compress(columns, map(self.where, batch.events))
        key = self.key
        return ((key(e), t, m, lo, e, o) for e, t, m, lo, o in columns)
