"""A plain, slow batch reference for the window tables, written independently of
`operators.windows`: no panes, no shards, no heaps, one event at a time.

It follows Spark's append-mode rules with the watermark taken after every record
(a micro-batch per record): wm = max event time read so far - delay; a window whose
end <= wm is closed for later events; sessions close when their end <= wm.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable

Row = tuple[Hashable, int, int, int]  # key, start, end, count


def sliding_reference(
    events: Iterable[tuple[Hashable, int]],
    length: int,
    slide: int,
    delay: int,
    having: Callable[[int], bool] | None = None,
    where: Callable[[Hashable, int], bool] | None = None,
) -> tuple[set[Row], list[tuple[Hashable, int, int]]]:
    """events in arrival order as (key, ts). Returns (rows, late as (key, ts, windows_missed)).
    Events `where` rejects are not counted but still move the watermark."""
    counts: dict[tuple[Hashable, int], int] = defaultdict(int)
    late = []
    high = None
    for key, ts in events:
        high = ts if high is None else max(high, ts)
        wm = high - delay
        if where is not None and not where(key, ts):
            continue
        starts = [
            s
            for s in range(ts - ts % slide - length + slide, ts + 1, slide)
            if s <= ts < s + length
        ]
        missed = [s for s in starts if s + length <= wm]
        if missed:
            late.append((key, ts, len(missed)))
        for s in starts:
            if s + length > wm:
                counts[(key, s)] += 1
    rows = {(k, s, s + length, n) for (k, s), n in counts.items() if having is None or having(n)}
    return rows, late


def session_reference(
    events: Iterable[tuple[Hashable, int]],
    gap: int,
    delay: int,
    having: Callable[[int], bool] | None = None,
    where: Callable[[Hashable, int], bool] | None = None,
) -> tuple[set[Row], list[tuple[Hashable, int]]]:
    open_sessions: dict[Hashable, list[list[int]]] = defaultdict(list)
    rows: set[Row] = set()
    late = []
    high = None

    def close(wm: float) -> None:
        for key, sessions in open_sessions.items():
            for s in [s for s in sessions if s[1] + gap <= wm]:
                sessions.remove(s)
                if having is None or having(s[2]):
                    rows.add((key, s[0], s[1] + gap, s[2]))

    for key, ts in events:
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
            1 + sum(s[2] for s in touching),
        ]
        open_sessions[key].append(merged)
    close(float("inf"))
    return rows, late
