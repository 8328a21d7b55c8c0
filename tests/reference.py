"""A plain, slow batch reference for the window tables, written independently of
`operators.windows`: no panes, no shards, no heaps, one event at a time.

It follows Spark's append-mode rules with the watermark taken after every record
(a micro-batch per record): wm = max event time read so far - delay; a window whose
end <= wm is closed for later events; sessions close when their end <= wm.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
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
) -> tuple[set[Row], list[tuple[Hashable, int]]]:
    """As `sliding_reference`, for sessions: open sessions are [start, last, positions]."""
    open_sessions: dict[Hashable, list[list]] = defaultdict(list)
    rows: set[Row] = set()
    late = []
    high = None

    def close(wm: float) -> None:
        for key, sessions in open_sessions.items():
            for s in [s for s in sessions if s[1] + gap <= wm]:
                sessions.remove(s)
                value = aggregate(s[2])
                if having is None or having(value):
                    rows.add((key, s[0], s[1] + gap, value))

    for i, (key, ts) in enumerate(events):
        high = ts if high is None else max(high, ts)
        wm = high - delay
        close(wm)
        if where is not None and not where(key, ts):
            continue
        if ts + gap <= wm:
            late.append((key, ts))
            continue
        touching = [s for s in open_sessions[key] if s[0] - gap <= ts <= s[1] + gap]
        for s in touching:
            open_sessions[key].remove(s)
        merged = [
            min([ts] + [s[0] for s in touching]),
            max([ts] + [s[1] for s in touching]),
            [i] + [j for s in touching for j in s[2]],
        ]
        open_sessions[key].append(merged)
    close(float("inf"))
    return rows, late
