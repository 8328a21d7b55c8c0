"""Session windows of one shard: open sessions per key, closed in order of their ends.

A session is emitted when the watermark passes its end + gap, one gap later than
Spark's append mode (its end). An event is late when its own session window
`[ts, ts + gap)` is closed, as in Spark; one that is not late is newer than the
watermark - gap, so it cannot touch a session ending at or before the watermark - gap,
and every event that is not late merges with every session it touches. That makes the
sessions those of a batch over the events that are not late, whatever the order and
speed they come in. Emitting at the end, an event of a partition read out of order by
more than the delay, not late itself, would find the session it belongs to emitted or
not depending on how far the other partitions had got (chaos seed 4: a hot user's
session split in two while `enrich`'s two processes wrote one partition out of order).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, TypeVar

from operators.aggregates import Aggregates
from operators.batches import END, Origin
from operators.clock import Clock
from operators.windows.specs import LateEvent, Session, WindowRow
from operators.windows.state import ShardLogic

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


class SessionState(NamedTuple):
    """What a session-window shard saves (as a plain tuple, see `ClockState`)."""

    clock: tuple  # ClockState
    sessions: dict[Hashable, list[tuple[int, int, Any]]]  # key -> [(start, last, state)]
    heap: list[tuple[int, int, Hashable]]  # (end, seq, key) of open sessions
    seq: int  # the next heap entry's tie breaker


class SessionLogic(ShardLogic):
    """Open sessions per key as `[start, last, state]` (state: a count or the partial
    states of aggregates), with a heap of their ends."""

    def __init__(
        self,
        window: Session,
        delay_ms: int,
        having: Callable[[Any], bool] | None,
        resume: tuple | None,
        aggs: Aggregates | None = None,
        finish: Callable[[Any], Any] | None = None,
    ) -> None:
        self.gap = window.gap_ms
        if resume is None:
            super().__init__(delay_ms, having, Clock(), aggs, finish)
            self.sessions: dict[Hashable, list[list[Any]]] = {}
            self.heap: list[tuple[int, int, Hashable]] = []
            self.seq = 0
        else:
            state = SessionState._make(resume)
            super().__init__(delay_ms, having, Clock.restore(state.clock), aggs, finish)
            load = self._load
            self.sessions = {
                k: [[s[0], s[1], load(s[2])] for s in v] for k, v in state.sessions.items()
            }
            self.heap, self.seq = list(state.heap), state.seq
            if self.heap:
                self.due = self.heap[0][0] + self.gap

    def _add(
        self, key: Hashable, time: int, threshold: int, event: Any, origin: Origin | None
    ) -> None:
        if time + self.gap <= threshold:
            self.late.append(
                LateEvent(event, key, time, threshold, 1, 1, "session window closed", origin)
            )
            return
        self._merge(key, time, time, 1 if self.aggs is None else self.aggs.of([event]))

    def _add_rows(self, rows: list[tuple]) -> None:
        merge = self._merge
        for key, first, last, n in rows:
            merge(key, first, last, n)

    def _merge(self, key: Hashable, first: int, last: int, n: Any) -> None:
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
        if end + self.gap < self.due:
            self.due = end + self.gap

    def _emit(self, watermark: int) -> None:
        """Emit the sessions that no event still to come can touch: end + gap <= watermark
        (see the module's docstring)."""
        gap, heap, having, finish, out = self.gap, self.heap, self.having, self.finish, self.out
        closed = watermark - gap
        while heap and heap[0][0] <= closed:
            _, _, key = heapq.heappop(heap)
            sessions = self.sessions.get(key)
            if not sessions:
                continue
            still_open = []
            for start, last, n in sessions:
                if last + gap <= closed:
                    value = n if finish is None else finish(n)
                    if having is None or having(value):
                        out.append(WindowRow(key, start, last + gap, value))
                else:
                    still_open.append([start, last, n])
            if still_open:
                self.sessions[key] = still_open
                # The session grew since this heap entry was pushed: look again at its end.
                self._push(min(s[1] for s in still_open) + gap, key)
            else:
                del self.sessions[key]
        self.due = heap[0][0] + gap if heap else END

    def state_size(self) -> int:
        return sum(map(len, list(self.sessions.values())))

    def snapshot(self) -> tuple:
        save = self._save
        return tuple(
            SessionState(
                self.clock.snapshot(),
                {k: [(s[0], s[1], save(s[2])) for s in v] for k, v in self.sessions.items()},
                list(self.heap),
                self.seq,
            )
        )
