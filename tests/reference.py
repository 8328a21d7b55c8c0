"""A plain, slow batch reference for the window tables, written independently of
`operators.windows`: no panes, no shards, no heaps, one event at a time.

It follows Spark's append-mode rules with the watermark taken after every record
(a micro-batch per record): wm = max event time read so far - delay; a window whose
end <= wm is closed for later events (see `session_reference` for sessions).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

Row = tuple[Hashable, int, int, Any]  # key, start, end, count (or `aggregate` of the events)


def sliding_reference(
    events: Iterable[tuple[Hashable, int]],
    length: int,
    slide: int,
    delay: int,
    having: Callable[[Any], bool] | None = None,
    where: Callable[[Hashable, int], bool] | None = None,
    aggregate: Callable[[list[int]], Any] = len,
) -> tuple[set[Row], list[tuple[Hashable, int, int]]]:
    """events in arrival order as (key, ts). Returns (rows, late as (key, ts, windows_missed)).
    Events `where` rejects are not counted but still move the watermark. A row's value is
    `aggregate` of the positions (in `events`) of its window's events: their count."""
    members: dict[tuple[Hashable, int], list[int]] = defaultdict(list)
    late = []
    high = None
    for i, (key, ts) in enumerate(events):
        high = ts if high is None else max(high, ts)
        wm = high - delay
        if where is not None and not where(key, ts):
            continue
        # every multiple of the slide from one at or before ts - length, brute force
        low = ts - length
        starts = [s for s in range(low - low % slide, ts + 1, slide) if s <= ts < s + length]
        missed = [s for s in starts if s + length <= wm]
        if missed:
            late.append((key, ts, len(missed)))
        for s in starts:
            if s + length > wm:
                members[(key, s)].append(i)
    values = {(k, s): aggregate(m) for (k, s), m in members.items()}
    rows = {(k, s, s + length, v) for (k, s), v in values.items() if having is None or having(v)}
    return rows, late


def session_reference(
    events: Iterable[tuple[Hashable, int]],
    gap: int,
    delay: int,
    having: Callable[[Any], bool] | None = None,
    where: Callable[[Hashable, int], bool] | None = None,
    aggregate: Callable[[list[int]], Any] = len,
    marks: Sequence[int] | None = None,
) -> tuple[set[Row], list[tuple[Hashable, int]]]:
    """As `sliding_reference`, for sessions; `marks[i]`, when given, is the progress the
    event `events[i]` is judged against (its own partition's, when several are read)
    instead of the largest time read so far. An event is late when its own session
    window `[ts, ts + gap)` ends at or before wm, as in Spark; the sessions are then
    those of a batch over the events that are not late: neighbours at most `gap` apart,
    end = last + gap. (Spark streaming also evicts a session once wm passes its end, and
    an event read later, out of order, that is not late but would have joined it starts a
    new one there: an answer that depends on its micro-batches. The operator keeps a
    session until no event that is not late can join it, so it gives this one.)"""
    kept: dict[Hashable, list[tuple[int, int]]] = defaultdict(list)
    late = []
    high = None
    for i, (key, ts) in enumerate(events):
        high = ts if high is None else max(high, ts)
        if where is not None and not where(key, ts):
            continue
        if ts + gap <= (high if marks is None else marks[i]) - delay:
            late.append((key, ts))
        else:
            kept[key].append((ts, i))
    rows: set[Row] = set()
    for key, timed in kept.items():
        timed.sort()
        runs: list[list[tuple[int, int]]] = []
        for ts, i in timed:
            if runs and ts - runs[-1][-1][0] <= gap:
                runs[-1].append((ts, i))
            else:
                runs.append([(ts, i)])
        for run in runs:
            value = aggregate([i for _, i in run])
            if having is None or having(value):
                rows.add((key, run[0][0], run[-1][0] + gap, value))
    return rows, late
