"""Event-time progress of one source partition, which may read several Kafka partitions."""

from __future__ import annotations

from collections.abc import Iterable

from operators.batches import NEVER


class PartitionProgress:
    """Largest event time read per Kafka partition; the least of them is the progress.

    A replay file can hold several Kafka partitions, dumped one after another. Known
    partitions (found up front) hold progress back until each has been read, so a
    backfill read partition by partition never makes in-order records late.
    """

    def __init__(self, known: Iterable[tuple[str, int]] = (), state: dict | None = None) -> None:
        self.latest: dict[tuple[str, int], int] = dict(state or {})
        for tp in known:
            self.latest.setdefault(tp, NEVER)
        self.low = min(self.latest.values(), default=NEVER)

    def advance(self, tp: tuple[str, int], ts: int) -> int:
        """Record that `ts` was read from `tp`; return the new progress."""
        latest = self.latest
        old = latest.get(tp)
        if old is None:
            # A partition nobody announced: it cannot pull progress back any more.
            latest[tp] = ts
            self.low = max(self.low, min(latest.values()))
        elif ts > old:
            latest[tp] = ts
            if old <= self.low:
                self.low = max(self.low, min(latest.values()))
        return self.low

    def read(self, tps: list[tuple[str, int]], times: list[int]) -> tuple[list[int], list[int]]:
        """`advance` for each record of a batch, in order (one loop, for speed): each
        record's mark (its own partition's progress, or the whole progress if that is
        ahead) and the whole progress after it."""
        latest = self.latest
        low = self.low
        marks: list[int] = []
        lows: list[int] = []
        to_marks, to_lows, get = marks.append, lows.append, latest.get
        for tp, ts in zip(tps, times, strict=True):
            old = get(tp)
            if old is None or ts > old:
                latest[tp] = mark = ts
                if old is None or old <= low:
                    low = max(low, min(latest.values()))
            else:
                mark = old
            to_marks(mark if mark > low else low)
            to_lows(low)
        self.low = low
        return marks, lows

    def snapshot(self) -> dict[tuple[str, int], int]:
        return dict(self.latest)
