"""Event-time window counts with Spark Structured Streaming's semantics.

`count_window` counts events per key in sliding, tumbling or session windows and
emits each window exactly once, when the stream's watermark passes its end:

- Sliding and tumbling windows are aligned to the Unix epoch and half open,
  `[start, start + length)`; an event belongs to `length / slide` windows.
- A session starts at its first event and ends at its last event + `gap`; an event
  joins a session when it is at most `gap` away (inclusive), and may bridge two.
- The watermark of the stream is the least progress over its input partitions
  (see `TimedBatch`) minus `delay`. An event is judged against the watermark of
  its own partition at the moment it was read (or the stream's, if that is
  ahead because idle partitions were skipped): windows that end at or before it
  are closed for that event, exactly as Spark drops late rows per window. Such an
  event is reported on the `late` stream with the reason; it never re-opens or
  re-emits a window.
- `where` picks the events to count, like SQL `WHERE`; the others still move
  event time on. `having` filters final counts only, like SQL `HAVING`.
- `None` is an ordinary key: events without a key form their own group.

Because lateness is judged against the partition's own progress, the output
depends on event time only: the same input gives the same windows at any speed,
batch size or worker count. The one wall-clock influence is the idle timeout of
the sources, which lets a quiet stream's watermark move on.

State is held per shard, not per key: events are routed to a fixed number of
shards by a stable hash of their key, and each shard keeps plain dicts of counts
per pane (one slide of time) and key. Cost grows with events and output rows,
not with the number of keys, and a restart may use another worker count.

Batches are combined before they are routed, as a map-side combiner does: counts
per (key, pane), or per-key runs of events closer than the gap for sessions, so
a shard receives a few rows per batch instead of every event. That is only done
when no event of the batch can be late or join a window closed during the batch
(checked per event against its own partition's progress, and never for a
partition that `was_idle`, which may be behind the stream). Otherwise every event
goes to its shard and is judged one by one. Both paths give the same windows.
"""

from __future__ import annotations

import heapq
import inspect
import weakref
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import compress
from operator import attrgetter, itemgetter, sub
from time import monotonic
from typing import Any, Generic, NamedTuple, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators.batches import END, NEVER, Origin, TimedBatch
from operators.clock import Clock

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)

DEFAULT_SHARDS = 32


@dataclass(frozen=True)
class Sliding:
    """Epoch-aligned windows of `length_ms`, one starting every `slide_ms`."""

    length_ms: int
    slide_ms: int

    def __post_init__(self) -> None:
        if self.length_ms <= 0 or self.slide_ms <= 0:
            raise ValueError("window length and slide must be positive")
        if self.length_ms % self.slide_ms:
            # Spark allows it, but then events belong to a varying number of windows;
            # none of our tables needs it.
            raise ValueError("window length must be a multiple of the slide")


def Tumbling(length_ms: int) -> Sliding:
    """Epoch-aligned windows of `length_ms` that do not overlap."""
    return Sliding(length_ms, length_ms)


@dataclass(frozen=True)
class Session:
    """Sessions per key that close after `gap_ms` without events."""

    gap_ms: int

    def __post_init__(self) -> None:
        if self.gap_ms <= 0:
            raise ValueError("session gap must be positive")


Window = Sliding | Session


class WindowCount(NamedTuple, Generic[K]):
    """The final count of one window: `[start_ms, end_ms)` for `key`."""

    key: K
    start_ms: int
    end_ms: int
    total: int


class LateEvent(NamedTuple, Generic[E]):
    """An event that arrived after some or all of its windows had closed."""

    event: E
    key: Hashable
    event_time_ms: int
    watermark_ms: int
    windows_missed: int
    windows_total: int
    reason: str
    origin: Origin | None = None


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


class WindowStats(LiveShards["_ShardLogic"]):
    """What a `count_window` holds in this process: its watermark and state size."""

    def __init__(self, delay_ms: int) -> None:
        super().__init__()
        self.delay = delay_ms

    def watermark_ms(self) -> int | None:
        """The least watermark over this process's shards; None before any progress and
        after the end of input."""
        lows = [shard.clock.low for shard in self._live()]
        if not lows or min(lows) <= NEVER or min(lows) >= END:
            return None
        return min(lows) - self.delay

    def open_windows(self) -> int:
        """State entries: (key, pane) counts of sliding windows, or open sessions."""
        return sum(shard.state_size() for shard in self._live())


@dataclass(frozen=True)
class WindowOut(Generic[E]):
    """Streams out of `count_window`, batched per shard activation for throughput, and
    `stats` on its state."""

    counts: Stream[list[WindowCount]]
    late: Stream[list[LateEvent[E]]]
    stats: WindowStats
    # What the counts mean (window, delay, key, where, having, shards), as text: a
    # recovery store saved under one definition must not resume under another.
    definition: str = ""


@dataclass(slots=True)
class _ShardMsg:
    """The slice of one `TimedBatch` that belongs to one shard: either every event
    (`items`: key, time, mark, low, event, origin) or the batch combined (`rows`, see
    `combine_panes`, `combine_sessions`). Slotted and not frozen: cheap to build."""

    part: str
    parts: int
    items: list[tuple[Hashable, int, int, int, Any, Origin | None]]
    progress: int
    idle: bool
    rows: list[tuple] | None = None


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


Key = Callable[[Any], Hashable]
Where = Callable[[Any], bool] | None


def combine_panes(
    batch: TimedBatch[Any], key: Key, where: Where, slide: int, delay: int
) -> list[tuple[Hashable, int, int]] | None:
    """Count a batch's events (those `where` holds) per key and pane, the slide-long
    stretch of time an event falls in: `(key, pane, count)` rows; `None` if some
    event of the batch may be late for its first window.

    ```python
    combine_panes(batch_of([("a", 1_000), ("a", 4_000), ("b", 6_000)]), key, None, 5_000, 60_000)
    # [("a", 0, 2), ("b", 5_000, 1)]
    ```
    """
    times, marks = batch.times, batch.marks
    # The first window of an event ends where its pane does, at pane + slide; it is
    # closed for the event when that is at or before its partition's watermark.
    first = min(times)
    if first - first % slide + slide + delay <= max(marks):  # cheap bound failed: exact test
        panes = [t - t % slide for t in times]
        if min(map(sub, panes, marks)) + slide + delay <= 0:
            return None
    counted = (
        Counter(zip(map(key, batch.events), [t - t % slide for t in times], strict=True))
        if where is None
        else Counter(
            (key(e), t - t % slide) for e, t in zip(batch.events, times, strict=True) if where(e)
        )
    )
    return [(k, p, n) for (k, p), n in counted.items()]


def combine_sessions(
    batch: TimedBatch[Any], key: Key, where: Where, gap: int, delay: int
) -> list[tuple[Hashable, int, int, int]] | None:
    """Merge a batch's events (those `where` holds) into runs per key, `(key, first,
    last, count)`, with at most `gap` between neighbours; `None` if some event may
    be late or may belong to a session that closes while the batch is read.

    ```python
    combine_sessions(batch_of([("a", 0), ("a", 20_000), ("a", 90_000)]), key, None, 30_000, 30_000)
    # [("a", 0, 20_000, 2), ("a", 90_000, 90_000, 1)]
    ```
    """
    times, marks = batch.times, batch.marks
    lows = marks if batch.lows is None else batch.lows
    first = min(times)
    # Late: t + gap <= mark - delay. And sessions ending at or before low - delay close
    # while the batch is read: an event at or before that could have joined one of
    # them, so it must be added in order. Cheap bounds first, then the exact test.
    if first + gap + delay <= max(marks) and min(map(sub, times, marks)) + gap + delay <= 0:
        return None
    if first + delay <= max(lows) and min(map(sub, times, lows)) + delay <= 0:
        return None
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


Combine = Callable[[TimedBatch[Any], Key, Where], list[tuple] | None]


class _Splitter(Generic[E]):
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

    def __call__(self, batch: TimedBatch[E]) -> list[tuple[str, _ShardMsg]]:
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
                (name, _ShardMsg(part, parts, [], progress, idle, rows))
                for name, rows in zip(self.names, buckets, strict=True)
                if rows or everyone
            ]
        return [
            (name, _ShardMsg(part, parts, items, progress, idle))
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


class _ShardLogic(StatefulBatchLogic[_ShardMsg, tuple[list[WindowCount], list[LateEvent]], Any]):
    """Shared event loop of one shard: watermark per event, then the window's rules."""

    def __init__(self, delay_ms: int, having: Callable[[int], bool] | None, clock: Clock) -> None:
        self.delay = delay_ms
        self.having = having
        self.clock = clock
        self.due = END  # earliest watermark at which something can be emitted
        self.out: list[WindowCount] = []
        self.late: list[LateEvent] = []

    def on_batch(self, values: list[_ShardMsg]) -> tuple[list[Any], bool]:
        clock, delay = self.clock, self.delay
        for msg in values:
            clock.parts = max(clock.parts, msg.parts)
            if msg.rows:
                # Combined only when no event is late and none can join a window that
                # closes during the batch: adding them all before emitting is exact.
                self._add_rows(msg.rows)
            elif msg.items:
                others = clock.others(msg.part)
                low = clock.low
                add = self._add
                for key, time, mark, source_low, event, origin in msg.items:
                    # the stream moves on when this partition and all others are past it
                    if source_low > low and others > low:
                        low = source_low if source_low < others else others
                        if low - delay >= self.due:
                            self._emit(low - delay)
                    add(key, time, (mark if mark > low else low) - delay, event, origin)
                clock.low = low
            clock.update(msg)
            if clock.low - delay >= self.due:
                self._emit(clock.low - delay)
        return self._flush(), StatefulBatchLogic.RETAIN

    def _flush(self) -> list[tuple[list[WindowCount], list[LateEvent]]]:
        if not self.out and not self.late:
            return []
        out, late = self.out, self.late
        self.out, self.late = [], []
        return [(out, late)]

    def _add(
        self, key: Hashable, time: int, threshold: int, event: Any, origin: Origin | None
    ) -> None:
        raise NotImplementedError

    def _add_rows(self, rows: list[tuple]) -> None:
        raise NotImplementedError

    def _emit(self, watermark: int) -> None:
        raise NotImplementedError

    def state_size(self) -> int:
        raise NotImplementedError


class _SlidingLogic(_ShardLogic):
    """Counts per pane and key; a window's count is the sum of its panes."""

    def __init__(
        self,
        window: Sliding,
        delay_ms: int,
        having: Callable[[int], bool] | None,
        resume: tuple | None,
    ) -> None:
        self.length = window.length_ms
        self.slide = window.slide_ms
        self.per_event = self.length // self.slide
        if resume is None:
            super().__init__(delay_ms, having, Clock())
            self.panes: dict[int, dict[Hashable, int]] = {}
            # Rare negative adjustments: an event late for some (not yet emitted) windows.
            self.corrections: dict[tuple[int, Hashable], int] = {}
            self.next_start = NEVER  # windows starting before this have been emitted
        else:
            clock, panes, corrections, self.next_start = resume
            super().__init__(delay_ms, having, Clock.restore(clock))
            self.panes = {p: dict(counts) for p, counts in panes.items()}
            self.corrections = dict(corrections)
            if self.panes:
                first = min(self.panes)
                self.due = max(self.next_start, first - self.length + self.slide) + self.length

    def _add(
        self, key: Hashable, time: int, threshold: int, event: Any, origin: Origin | None
    ) -> None:
        slide, length = self.slide, self.length
        last_start = time - time % slide
        first_start = last_start - length + slide
        if first_start + length <= threshold:  # the first window is closed for this event
            missed = min(self.per_event, (threshold - first_start - length) // slide + 1)
            reason = (
                f"all {self.per_event} windows closed"
                if missed == self.per_event
                else f"{missed} of {self.per_event} windows closed"
            )
            self.late.append(
                LateEvent(event, key, time, threshold, missed, self.per_event, reason, origin)
            )
            if missed == self.per_event:
                return
            # Counted only in the windows still open for it; windows closed for it but not
            # yet emitted (other partitions lag behind) get a correction.
            for start in range(
                max(first_start, self.next_start), first_start + missed * slide, slide
            ):
                self.corrections[(start, key)] = self.corrections.get((start, key), 0) - 1
        # Panes are one slide long, so the pane of an event starts where its last window does.
        self._count(key, last_start, 1)

    def _add_rows(self, rows: list[tuple]) -> None:
        count = self._count
        for key, pane, n in rows:
            count(key, pane, n)

    def _count(self, key: Hashable, pane: int, n: int) -> None:
        counts = self.panes.get(pane)
        if counts is None:
            counts = self.panes[pane] = {}
            end = max(self.next_start, pane - self.length + self.slide) + self.length
            if end < self.due:
                self.due = end
        counts[key] = counts.get(key, 0) + n

    def _emit(self, watermark: int) -> None:
        slide, length, panes = self.slide, self.length, self.panes
        starts = sorted(panes)
        having, out, corrections = self.having, self.out, self.corrections
        while starts:
            first = starts[0]
            # The earliest window holding the earliest pane, unless already emitted.
            start = max(self.next_start, first - length + slide)
            if start + length > watermark:
                self.due = start + length
                return
            end = start + length
            if slide == length:
                counts = dict(panes[first]) if first >= start and first < end else {}
            else:
                counts = {}
                for pane in starts:
                    if pane >= end:
                        break
                    for key, n in panes[pane].items():
                        counts[key] = counts.get(key, 0) + n
            if corrections:
                for (cstart, key), n in list(corrections.items()):
                    if cstart == start:
                        counts[key] = counts.get(key, 0) + n
                        del corrections[(cstart, key)]
            for key, n in counts.items():
                if n > 0 and (having is None or having(n)):
                    out.append(WindowCount(key, start, end, n))
            self.next_start = start + slide
            # A pane is done once the last window holding it has been emitted.
            while starts and starts[0] < self.next_start:
                del panes[starts.pop(0)]
        if corrections:
            for cstart, key in [ck for ck in corrections if ck[0] < self.next_start]:
                del corrections[(cstart, key)]
        self.due = END

    def state_size(self) -> int:
        return sum(map(len, list(self.panes.values())))

    def snapshot(self) -> tuple:
        return (
            self.clock.snapshot(),
            {p: dict(counts) for p, counts in self.panes.items()},
            dict(self.corrections),
            self.next_start,
        )


class _SessionLogic(_ShardLogic):
    """Open sessions per key as `[start, last, count]`, with a heap of their ends."""

    def __init__(
        self,
        window: Session,
        delay_ms: int,
        having: Callable[[int], bool] | None,
        resume: tuple | None,
    ) -> None:
        self.gap = window.gap_ms
        if resume is None:
            super().__init__(delay_ms, having, Clock())
            self.sessions: dict[Hashable, list[list[int]]] = {}
            self.heap: list[tuple[int, int, Hashable]] = []
            self.seq = 0
        else:
            clock, sessions, self.heap, self.seq = resume
            super().__init__(delay_ms, having, Clock.restore(clock))
            self.sessions = {k: [list(s) for s in v] for k, v in sessions.items()}
            self.heap = list(self.heap)
            if self.heap:
                self.due = self.heap[0][0]

    def _add(
        self, key: Hashable, time: int, threshold: int, event: Any, origin: Origin | None
    ) -> None:
        if time + self.gap <= threshold:
            self.late.append(
                LateEvent(event, key, time, threshold, 1, 1, "session window closed", origin)
            )
            return
        self._merge(key, time, time, 1)

    def _add_rows(self, rows: list[tuple]) -> None:
        merge = self._merge
        for key, first, last, n in rows:
            merge(key, first, last, n)

    def _merge(self, key: Hashable, first: int, last: int, n: int) -> None:
        """Add a run of `n` events from `first` to `last` (no gap wider than `gap`)."""
        gap = self.gap
        sessions = self.sessions.get(key)
        if sessions is None:
            self.sessions[key] = [[first, last, n]]
            self._push(last + gap, key)
            return
        if len(sessions) == 1:
            s = sessions[0]
            if s[0] - gap <= last and first <= s[1] + gap:  # the common case: extends it
                if last > s[1]:
                    s[1] = last
                if first < s[0]:
                    s[0] = first
                s[2] += n
                return
        # Merge with every session it touches (it may bridge two), keep the list sorted.
        merged = [first, last, n]
        keep = []
        for s in sessions:
            if s[0] - gap <= last and first <= s[1] + gap:
                merged = [min(merged[0], s[0]), max(merged[1], s[1]), merged[2] + s[2]]
            else:
                keep.append(s)
        keep.append(merged)
        keep.sort()
        self.sessions[key] = keep
        self._push(merged[1] + gap, key)

    def _push(self, end: int, key: Hashable) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (end, self.seq, key))
        if end < self.due:
            self.due = end

    def _emit(self, watermark: int) -> None:
        gap, heap, having, out = self.gap, self.heap, self.having, self.out
        while heap and heap[0][0] <= watermark:
            _, _, key = heapq.heappop(heap)
            sessions = self.sessions.get(key)
            if not sessions:
                continue
            still_open = []
            for start, last, n in sessions:
                if last + gap <= watermark:
                    if having is None or having(n):
                        out.append(WindowCount(key, start, last + gap, n))
                else:
                    still_open.append([start, last, n])
            if still_open:
                self.sessions[key] = still_open
                # The session grew since this heap entry was pushed: look again at its end.
                self._push(min(s[1] for s in still_open) + gap, key)
            else:
                del self.sessions[key]
        self.due = heap[0][0] if heap else END

    def state_size(self) -> int:
        return sum(map(len, list(self.sessions.values())))

    def snapshot(self) -> tuple:
        return (
            self.clock.snapshot(),
            {k: [tuple(s) for s in v] for k, v in self.sessions.items()},
            list(self.heap),
            self.seq,
        )


@operator
def count_window(
    step_id: str,
    up: Stream[TimedBatch[E]],
    key: Callable[[E], Hashable],
    window: Window,
    delay_ms: int,
    where: Callable[[E], bool] | None = None,
    having: Callable[[int], bool] | None = None,
    shards: int = DEFAULT_SHARDS,
) -> WindowOut[E]:
    """Count events per key and event-time window, like Spark's
    `withWatermark(delay).where(...).groupBy(key, window(...)).count()` in append mode.

    ```python
    from operator import attrgetter

    from operators.windows import Sliding, count_window

    # html pages per user per minute, a new window every 5 s, 60 s watermark delay
    pages = count_window("pages_per_min", clicks, attrgetter("userid"),
                         Sliding(60_000, 5_000), delay_ms=60_000,
                         where=lambda c: "html" in c.request)
    op.inspect("rows", pages.counts)   # [WindowCount(12, start, end, 7), ...]
    op.inspect("late", pages.late)     # [LateEvent(click, 12, ts, wm, 12, 12, reason, origin)]
    ```

    :arg key: Group key of an event; `None` is a key like any other.
    :arg window: `Sliding(length, slide)`, `Tumbling(length)` or `Session(gap)`.
    :arg delay_ms: Watermark delay: how far behind the stream's progress an
        event may arrive and still be counted.
    :arg where: Counts only the events for which it is true, like SQL `WHERE`. The
        others still move event time on: progress is what was read, as in Spark.
    :arg having: Keeps only windows whose final count passes this test.
    :arg shards: Number of state shards; fixed for the life of a recovery store.
    :returns: `counts` (final window counts) and `late` (events that missed
        some or all of their windows), both as lists per shard activation, and
        `stats` (watermark and state size, for monitoring).
    """
    if delay_ms < 0:
        raise ValueError("delay must not be negative")
    combine: Combine
    if isinstance(window, Session):
        combine = partial(combine_sessions, gap=window.gap_ms, delay=delay_ms)
    else:
        combine = partial(combine_panes, slide=window.slide_ms, delay=delay_ms)
    keyed = op.flat_map("shard", up, _Splitter(key, where, shards, combine))

    stats = WindowStats(delay_ms)

    def build(resume: tuple | None) -> _ShardLogic:
        logic: _ShardLogic
        if isinstance(window, Session):
            logic = _SessionLogic(window, delay_ms, having, resume)
        else:
            logic = _SlidingLogic(window, delay_ms, having, resume)
        stats.shards.add(logic)
        return logic

    results = op.key_rm("unshard", op.stateful_batch("count", keyed, build))
    counts = op.filter_map("counts", results, lambda r: r[0] or None)
    late = op.filter_map("late", results, lambda r: r[1] or None)
    definition = (
        f"{window}, delay {delay_ms} ms, key {describe(key)}, where {describe(where)}, "
        f"having {describe(having)}, {shards} shards"
    )
    return WindowOut(counts, late, stats, definition)


def describe(fn: Callable | None) -> str:
    """A function as stable text: `attrgetter('userid')`, or a lambda's source line."""
    if fn is None:
        return "none"
    if isinstance(fn, attrgetter | itemgetter):
        return repr(fn).removeprefix("operator.")
    try:
        return " ".join(inspect.getsource(fn).split()).rstrip(",")
    except (OSError, TypeError):
        return getattr(fn, "__qualname__", repr(fn))
