"""A stream's event-time progress: the least progress over its input partitions."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from operators.batches import END, NEVER


class PartitionReport(Protocol):
    """What a partition reports: who it is, how many there are, how far it has read."""

    @property
    def part(self) -> str: ...
    @property
    def parts(self) -> int: ...
    @property
    def progress(self) -> int: ...
    @property
    def idle(self) -> bool: ...


class ClockState(NamedTuple):
    """What a `Clock` saves. Saved as a plain tuple (`tuple(state)`), as every state of
    ours is, so a recovery store never depends on where this class lives."""

    progress: dict[str, int]
    idle: frozenset[str]
    parts: int
    low: int


class Clock:
    """The stream's event-time progress as seen by one shard."""

    __slots__ = ("idle", "low", "parts", "progress")

    def __init__(self) -> None:
        self.progress: dict[str, int] = {}
        self.idle: set[str] = set()
        self.parts = 0
        # Stream progress never goes back, even when an idle partition wakes up.
        self.low = NEVER

    def others(self, part: str) -> int:
        """Least progress of the partitions other than `part` that hold the stream back."""
        if len(self.progress) + (part not in self.progress) < self.parts:
            return NEVER  # a partition we have not heard from yet holds everything back
        low = END
        for other, progress in self.progress.items():
            if other != part and other not in self.idle and progress < low:
                low = progress
        return low

    @property
    def all_idle(self) -> bool:
        """Every partition has been heard from and is idle: a stream in this state holds
        no other stream back (its progress stays at its last event time)."""
        return (
            bool(self.progress)
            and len(self.progress) >= self.parts
            and self.idle.issuperset(self.progress)
        )

    def update(self, msg: PartitionReport) -> None:
        self.parts = max(self.parts, msg.parts)
        self.progress[msg.part] = max(self.progress.get(msg.part, NEVER), msg.progress)
        if msg.idle:
            self.idle.add(msg.part)
        else:
            self.idle.discard(msg.part)
        if len(self.progress) < self.parts:
            return
        active = [p for part, p in self.progress.items() if part not in self.idle]
        # All partitions idle: the stream moves with the most advanced one.
        low = min(active) if active else max(self.progress.values())
        self.low = max(self.low, low)

    def snapshot(self) -> tuple:
        return tuple(ClockState(dict(self.progress), frozenset(self.idle), self.parts, self.low))

    @classmethod
    def restore(cls, saved: tuple) -> Clock:
        state = ClockState._make(saved)
        clock = cls()
        clock.progress, clock.idle = dict(state.progress), set(state.idle)
        clock.parts, clock.low = state.parts, state.low
        return clock
