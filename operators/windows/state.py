"""What both window logics share: one shard's event loop, judging each event against its
partition's watermark before the window's own rules.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from bytewax.operators import StatefulBatchLogic

from operators.aggregates import Aggregates
from operators.batches import END, Origin
from operators.clock import Clock
from operators.windows.routing import ShardMsg, as_shard_msg
from operators.windows.specs import LateEvent, WindowRow

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


class ShardLogic(StatefulBatchLogic[tuple, tuple[list[WindowRow], list[LateEvent]], Any]):
    """Shared event loop of one shard: watermark per event, then the window's rules."""

    def __init__(
        self,
        delay_ms: int,
        having: Callable[[Any], bool] | None,
        clock: Clock,
        aggs: Aggregates | None,
        finish: Callable[[Any], Any] | None,
    ) -> None:
        self.delay = delay_ms
        self.having = having
        self.clock = clock
        # None: the state of a window is its count, a plain int (the fast path). Else
        # it is a `Partial` of these aggregates, which adds like an int.
        self.aggs = aggs
        # The value a window emits, from its state (None: the state itself).
        self.finish = finish
        self.due = END  # earliest watermark at which something can be emitted
        self.out: list[WindowRow] = []
        self.late: list[LateEvent] = []

    def on_batch(self, values: list[tuple]) -> tuple[list[Any], bool]:
        """`values`: `ShardMsg` fields as plain tuples (see `ShardMsg`)."""
        clock, delay = self.clock, self.delay
        for fields in values:
            msg: ShardMsg = as_shard_msg(fields)
            clock.parts = max(clock.parts, msg.parts)
            if msg.rows:
                # Combined only when no event is late and none can join a window that
                # closes during the batch: adding them all before emitting is exact.
                self._add_rows(msg.rows if self.aggs is None else self._loaded(msg.rows))
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

    def _loaded(self, rows: list[tuple]) -> list[tuple]:
        """Combined rows with their last field, a saved partial (see `combine_panes`,
        `combine_sessions`: rows may come from another process), loaded."""
        assert self.aggs is not None
        load = self.aggs.load
        return [(*row[:-1], load(row[-1])) for row in rows]

    def _save(self, state: Any) -> Any:
        return state if self.aggs is None else self.aggs.save(state)

    def _load(self, saved: Any) -> Any:
        return saved if self.aggs is None else self.aggs.load(saved)

    def _save_all(self, states: dict) -> dict:
        """A copy of `states` for a snapshot: plain data (see `Aggregate.save`)."""
        if self.aggs is None:
            return dict(states)
        save = self.aggs.save
        return {k: save(v) for k, v in states.items()}

    def _load_all(self, saved: dict) -> dict:
        if self.aggs is None:
            return dict(saved)
        load = self.aggs.load
        return {k: load(v) for k, v in saved.items()}

    def _flush(self) -> list[tuple[list[WindowRow], list[LateEvent]]]:
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
