"""Event-time window aggregates with Spark Structured Streaming's semantics.

`window_aggregate` computes aggregates (`operators.aggregates`: count, sum, avg, min,
max, distinct counts) per key in sliding, tumbling or session windows, and `count_window`
counts; both emit each window exactly once, when the stream's watermark passes its end
(a session's end + gap, see `operators.windows.session`):

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
  re-emits a window. An event late for only some of its sliding windows still counts
  in the others (a count is taken back from the closed ones; other aggregates cannot
  take back, so the event goes to each open window instead of to its pane).
- `where` picks the events to count, like SQL `WHERE`; the others still move
  event time on. `having` filters final counts only, like SQL `HAVING`.
- `None` is an ordinary key: events without a key form their own group.

Because lateness is judged against the partition's own progress, the output
depends on event time only: the same input gives the same windows at any speed,
batch size or worker count. The one wall-clock influence is the idle timeout of
the sources, which lets a quiet stream's watermark move on.

State is held per shard, not per key: events are routed to a fixed number of
shards by a stable hash of their key, and each shard keeps plain dicts of counts (or
partial aggregate states, which merge with `+`) per pane (one slide of time) and key.
Cost grows with events and output rows, not with the number of keys, and a restart may
use another worker count.

Batches are combined before they are routed, as a map-side combiner does: counts or
partial states per (key, pane), or per-key runs of events closer than the gap for
sessions, so a shard receives a few rows per batch instead of every event. That is only
done when no event of the batch can be late or join a window closed during the batch
(checked per event against its own partition's progress, and never for a partition that
`was_idle`, which may be behind the stream). Otherwise every event goes to its shard and
is judged one by one. Both paths give the same windows.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from operators.aggregates import Aggregate, Aggregates
from operators.batches import TimedBatch
from operators.shards import DEFAULT_SHARDS, LiveShards, ShardCache, shard_of
from operators.windows.routing import Combine, ShardMsg, Splitter, combine_panes, combine_sessions
from operators.windows.session import SessionLogic
from operators.windows.sliding import SlidingLogic
from operators.windows.specs import LateEvent, Session, Sliding, Tumbling, Window, WindowRow
from operators.windows.state import ShardLogic
from operators.windows.stats import WindowStats

__all__ = [
    "DEFAULT_SHARDS",
    "LateEvent",
    "LiveShards",
    "Session",
    "ShardCache",
    "ShardMsg",
    "Sliding",
    "Tumbling",
    "Window",
    "WindowOut",
    "WindowRow",
    "WindowStats",
    "combine_panes",
    "combine_sessions",
    "count_window",
    "shard_of",
    "window_aggregate",
]

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class WindowOut(Generic[E]):
    """Streams out of a window operator, batched per shard activation for throughput, and
    `stats` on its state."""

    counts: Stream[list[WindowRow]]
    late: Stream[list[LateEvent[E]]]
    stats: WindowStats


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
    op.inspect("rows", pages.counts)   # [WindowRow(12, start, end, 7), ...]
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
    return _window(up, key, window, delay_ms, where, having, shards, None, None)


@operator
def window_aggregate(
    step_id: str,
    up: Stream[TimedBatch[E]],
    key: Callable[[E], Hashable],
    window: Window,
    delay_ms: int,
    aggregates: Sequence[Aggregate],
    where: Callable[[E], bool] | None = None,
    having: Callable[[tuple], bool] | None = None,
    shards: int = DEFAULT_SHARDS,
) -> WindowOut[E]:
    """`count_window` for any aggregates: each window's value is the tuple of their
    results, like Spark's `groupBy(key, window(...)).agg(...)` in append mode.

    ```python
    from operator import attrgetter

    from operators.aggregates import Avg, Count, CountDistinct, Max, Sum
    from operators.windows import Tumbling, window_aggregate

    b, ip = attrgetter("bytes"), attrgetter("ip")
    per_user = window_aggregate(
        "bytes_per_min", clicks, attrgetter("userid"), Tumbling(60_000), delay_ms=60_000,
        aggregates=[Count(), Sum(b), Avg(b), Max(b), CountDistinct(ip)],
        having=lambda v: v[0] > 1)
    op.inspect("rows", per_user.counts)  # [WindowRow(12, start, end, (7, 9120, 1302.9, 4006, 3))]
    ```

    Every state merges, so batches are combined before routing and sessions merge
    as with counts. Only `count(*)` keeps plain ints (the same speed as `count_window`).

    :arg aggregates: `operators.aggregates` instances, in the order of the values.
    :arg having: Keeps only windows whose values pass this test.
    """
    aggs = Aggregates(aggregates)
    if aggs.is_count():
        return _window(up, key, window, delay_ms, where, having, shards, None, _as_tuple)
    return _window(up, key, window, delay_ms, where, having, shards, aggs, aggs.results)


def _as_tuple(count: int) -> tuple[int]:
    return (count,)


def _window(
    up: Stream[TimedBatch[E]],
    key: Callable[[E], Hashable],
    window: Window,
    delay_ms: int,
    where: Callable[[E], bool] | None,
    having: Callable[[Any], bool] | None,
    shards: int,
    aggs: Aggregates | None,
    finish: Callable[[Any], Any] | None,
) -> WindowOut[E]:
    """The steps of both operators (`shard`, `count`, `unshard`, `counts`, `late`: their
    ids name the state in recovery stores, so they stay)."""
    if delay_ms < 0:
        raise ValueError("delay must not be negative")
    combine: Combine
    if isinstance(window, Session):
        combine = partial(combine_sessions, gap=window.gap_ms, delay=delay_ms, aggs=aggs)
    else:
        combine = partial(combine_panes, window=window, delay=delay_ms, aggs=aggs)
    keyed = op.flat_map("shard", up, Splitter(key, where, shards, combine))

    stats = WindowStats(delay_ms)

    def build(resume: tuple | None) -> ShardLogic:
        logic: ShardLogic
        if isinstance(window, Session):
            logic = SessionLogic(window, delay_ms, having, resume, aggs, finish)
        else:
            logic = SlidingLogic(window, delay_ms, having, resume, aggs, finish)
        stats.shards.add(logic)
        return logic

    results = op.key_rm("unshard", op.stateful_batch("count", keyed, build))
    counts = op.filter_map("counts", results, lambda r: r[0] or None)
    late = op.filter_map("late", results, lambda r: r[1] or None)
    return WindowOut(counts, late, stats)
