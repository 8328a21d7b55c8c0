"""Run `count_window` or `window_aggregate` on plain (key, ts[, value]) events, split
into batches and partitions."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from operators.aggregates import Aggregate
from operators.batches import TimedBatch, batches_of
from operators.windows import LateEvent, Window, WindowRow, count_window, window_aggregate


class Ev(NamedTuple):
    key: Hashable
    ts: int
    value: int | None = None  # what aggregates other than count(*) read


def batches_for(
    events: Sequence[Ev], batch_sizes: Sequence[int], part: str = "p0", parts: int = 1
) -> list[TimedBatch[Ev]]:
    """Cut events (in arrival order) into batches; the last one ends the partition."""
    return batches_of(events, [e.ts for e in events], batch_sizes, part, parts)


def run_windows(
    entry_point: Callable[[Dataflow], None],
    inputs: Sequence[Sequence[TimedBatch[Ev]]],
    window: Window,
    delay: int,
    having: Callable[[Any], bool] | None = None,
    shards: int = 4,
    where: Callable[[Ev], bool] | None = None,
    aggregates: Sequence[Aggregate] | None = None,
) -> tuple[list[WindowRow], list[LateEvent]]:
    """Each element of `inputs` is one source partition's batches. With `aggregates`,
    `window_aggregate` runs instead of `count_window`."""
    flow = Dataflow("windows_test")
    streams = [op.input(f"in{i}", flow, TestingSource(batches)) for i, batches in enumerate(inputs)]
    up = streams[0] if len(streams) == 1 else op.merge("merge", *streams)
    if aggregates is None:
        out = count_window(
            "win", up, lambda e: e.key, window, delay, where=where, having=having, shards=shards
        )
    else:
        out = window_aggregate(
            "win", up, lambda e: e.key, window, delay, aggregates, where, having, shards
        )
    counts: list[list[WindowRow]] = []
    late: list[list[LateEvent]] = []
    op.output("counts", out.counts, TestingSink(counts))
    op.output("late", out.late, TestingSink(late))
    entry_point(flow)
    return [c for batch in counts for c in batch], [e for batch in late for e in batch]


def as_rows(counts: Sequence[WindowRow]) -> set[tuple[Hashable, int, int, int]]:
    rows = {(c.key, c.start_ms, c.end_ms, c.value) for c in counts}
    assert len(rows) == len(counts), "a window was emitted twice"
    return rows
