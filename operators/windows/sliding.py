"""Sliding and tumbling windows of one shard: state per pane and key (a count, or the
partial states of aggregates), a window's state the sum of its panes'. A pane is one
slide long, or shorter when the length is not a multiple of the slide
(`Sliding.pane_ms`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, TypeVar

from operators.aggregates import Aggregates
from operators.batches import END, NEVER, Origin
from operators.clock import Clock
from operators.windows.specs import LateEvent, Sliding, WindowRow
from operators.windows.state import ShardLogic

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


class SlidingState(NamedTuple):
    """What a sliding-window shard saves (as a plain tuple, see `ClockState`)."""

    clock: tuple  # ClockState
    panes: dict[int, dict[Hashable, Any]]  # pane start -> key -> state (count or saved)
    corrections: dict[tuple[int, Hashable], Any]  # (window start, key) -> adjustment
    next_start: int  # windows starting before this have been emitted


class SlidingLogic(ShardLogic):
    """State per pane and key; a window's state is the sum of its panes'."""

    def __init__(
        self,
        window: Sliding,
        delay_ms: int,
        having: Callable[[Any], bool] | None,
        resume: tuple | None,
        aggs: Aggregates | None = None,
        finish: Callable[[Any], Any] | None = None,
    ) -> None:
        self.window = window
        self.length = window.length_ms
        self.slide = window.slide_ms
        self.pane_ms = window.pane_ms
        if resume is None:
            super().__init__(delay_ms, having, Clock(), aggs, finish)
            self.panes: dict[int, dict[Hashable, Any]] = {}
            # Rare adjustments for an event late for some (not yet emitted) windows:
            # counts take it back from those (-1); other aggregates cannot take back, so
            # the event goes to each window still open for it instead of to its pane.
            self.corrections: dict[tuple[int, Hashable], Any] = {}
            self.next_start = NEVER  # windows starting before this have been emitted
        else:
            state = SlidingState._make(resume)
            self.next_start = state.next_start
            super().__init__(delay_ms, having, Clock.restore(state.clock), aggs, finish)
            self.panes = {p: self._load_all(s) for p, s in state.panes.items()}
            self.corrections = self._load_all(state.corrections)
            if self.panes:
                first = min(self.panes)
                self.due = max(self.next_start, window.first_start(first)) + self.length

    def _add(
        self, key: Hashable, time: int, threshold: int, event: Any, origin: Origin | None
    ) -> None:
        slide, length = self.slide, self.length
        last_start = time - time % slide
        first_start = self.window.first_start(time)
        pane = time - time % self.pane_ms
        if first_start + length <= threshold:  # the first window is closed for this event
            total = (last_start - first_start) // slide + 1
            missed = min(total, (threshold - first_start - length) // slide + 1)
            reason = (
                f"all {total} windows closed"
                if missed == total
                else f"{missed} of {total} windows closed"
            )
            self.late.append(LateEvent(event, key, time, threshold, missed, total, reason, origin))
            if missed == total:
                return
            if self.aggs is not None:
                one = self.aggs.of([event])
                self._pane(pane)  # keeps its windows walked until they are emitted
                for start in range(first_start + missed * slide, last_start + 1, slide):
                    self.corrections[(start, key)] = self.corrections.get((start, key), 0) + one
                return
            # Counted only in the windows still open for it; windows closed for it but not
            # yet emitted (other partitions lag behind) get a correction.
            for start in range(
                max(first_start, self.next_start), first_start + missed * slide, slide
            ):
                self.corrections[(start, key)] = self.corrections.get((start, key), 0) - 1
        self._count(key, pane, 1 if self.aggs is None else self.aggs.of([event]))

    def _add_rows(self, rows: list[tuple]) -> None:
        count = self._count
        for key, pane, n in rows:
            count(key, pane, n)

    def _pane(self, pane: int) -> dict[Hashable, Any]:
        """The states of `pane` per key, made when new (its first window then becomes due)."""
        counts = self.panes.get(pane)
        if counts is None:
            counts = self.panes[pane] = {}
            end = max(self.next_start, self.window.first_start(pane)) + self.length
            if end < self.due:
                self.due = end
        return counts

    def _count(self, key: Hashable, pane: int, n: Any) -> None:
        counts = self.panes.get(pane)  # the common case without a call: the pane exists
        if counts is None:
            counts = self._pane(pane)
        counts[key] = counts.get(key, 0) + n

    def _emit(self, watermark: int) -> None:
        slide, length, panes = self.slide, self.length, self.panes
        starts = sorted(panes)
        having, finish, out, corrections = self.having, self.finish, self.out, self.corrections
        while starts:
            first = starts[0]
            # The earliest window holding the earliest pane, unless already emitted.
            start = max(self.next_start, self.window.first_start(first))
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
                if n:  # a count taken back to 0 is no window
                    value = n if finish is None else finish(n)
                    if having is None or having(value):
                        out.append(WindowRow(key, start, end, value))
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
        return tuple(
            SlidingState(
                self.clock.snapshot(),
                {p: self._save_all(s) for p, s in self.panes.items()},
                self._save_all(self.corrections),
                self.next_start,
            )
        )
